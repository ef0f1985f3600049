"""The embedded local Ray's environment and ports, decided by raybake, not by the machine."""

from __future__ import annotations

import http.server
import os
import sys
import threading
from pathlib import Path

from raybake.clusters.embedded import SERVICE_PORTS, WORKER_PORTS, free_port, head_environ, pick_ports

CLIENT = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/ada",
    "LC_ALL": "C.UTF-8",
    "HF_HOME": "/data/hf",
    "HF_HUB_OFFLINE": "1",
    "RAY_DEDUP_LOGS": "0",
    # What must stay behind: the client's secrets, its object stores (each job gets those of its
    # own URIs, raybake/clusters/local.py) and the Ray it talks to elsewhere.
    "AWS_PROFILE": "research",
    "AWS_SHARED_CREDENTIALS_FILE": "/home/ada/.aws/research",
    "GOOGLE_APPLICATION_CREDENTIALS": "/home/ada/gcp.json",
    "AZURE_STORAGE_ACCOUNT_KEY": "azure-key",
    "RAY_AUTH_TOKEN": "production-ray-token",
    "RAY_AUTH_TOKEN_PATH": "/home/ada/prod.token",
    "RAY_AUTH_MODE": "disabled",
    "RAY_ADDRESS": "https://ray.prod.example:8265",
    "HF_TOKEN": "hf_secret",
    "AWS_ACCESS_KEY_ID": "AKIA0000",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_SESSION_TOKEN": "aws-session",
    "RAYBAKE_REGISTRY_PASSWORD": "registry-secret",
    "KUBECONFIG": "/home/ada/.kube/prod",
    "GITHUB_TOKEN": "ghp_secret",
    "DATABASE_URL": "postgres://u:p@db/x",
    "MY_COMPANY_API_KEY": "company-api-key",
}


def test_the_head_gets_the_kept_settings_and_its_own_auth_only(tmp_path):
    token = tmp_path / "local.token"
    env = head_environ(CLIENT, token_file=token)
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(token)
    kept = {"HOME", "LC_ALL", "HF_HOME", "HF_HUB_OFFLINE", "RAY_DEDUP_LOGS"}
    assert {k: env[k] for k in kept} == {k: CLIENT[k] for k in kept}
    assert set(env) == kept | {"PATH", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    secrets = [v for k, v in CLIENT.items() if k not in kept and k != "PATH"]
    assert not [s for s in secrets if s in "\n".join(env.values()).replace(str(token), "")]


def test_python_on_the_heads_path_is_the_clients_interpreter():
    env = head_environ({"PATH": "/usr/bin:/bin"}, token_file=Path("/t"))
    assert env["PATH"].split(":") == [str(Path(sys.executable).parent), "/usr/bin", "/bin"]


def test_every_service_gets_a_free_port_outside_the_worker_range():
    taken = (8265, 6379)
    ports, low = pick_ports(SERVICE_PORTS, taken=taken)
    assert set(ports) == set(SERVICE_PORTS)
    chosen = [*ports.values(), *taken]
    assert len(set(chosen)) == len(chosen)
    assert not [p for p in chosen if low <= p <= low + WORKER_PORTS]


def _prepared(tmp_path, **settings):
    from raybake.clusters.local import LocalBackend
    from raybake.config import Settings
    from raybake.spec import JobSpec

    defaults = {"local_dashboard_port": free_port(), "state_file": str(tmp_path / "state.json")}
    backend = LocalBackend(Settings(**{**defaults, **settings}))
    spec = JobSpec(corpus=str(tmp_path / "corpus"), output=str(tmp_path / "out"), name="raybake-embed-1")
    return spec, backend.prepare(spec)


def test_the_ray_raybake_starts_keeps_its_workers_warm_without_changing_the_job(tmp_path):
    spec, placed = _prepared(tmp_path)
    assert placed.runs.job_args[-2:] == ("--keep-warm-seconds", "300")
    assert placed.named == spec  # the id, the resume check and what the user sees are the job's alone
    assert _prepared(tmp_path, local_keep_warm_s=0)[1].runs.job_args == ()


def test_a_users_own_ray_on_the_local_port_gets_no_warm_workers(tmp_path):
    # Something answers HTTP on the port, and raybake did not start it: a user's `ray start --head`.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _, placed = _prepared(tmp_path, local_dashboard_port=server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert "--keep-warm-seconds" not in placed.runs.job_args


def test_a_listener_raybake_did_not_start_gets_no_token_from_the_environment(tmp_path, monkeypatch):
    """Something else answers on the local port (a squatter, a user's own Ray): $RAY_AUTH_TOKEN,
    a production cluster's as a rule, is not handed to it; a token file named for it is."""
    from raybake.clusters.local import LocalBackend
    from raybake.config import Settings

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("RAY_AUTH_TOKEN", "production-ray-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "prod.token"))
    (tmp_path / "prod.token").write_text("production-token-file")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    port = server.server_address[1]
    try:
        settings = Settings(local_dashboard_port=port, state_file=str(tmp_path / "state.json"))
        assert LocalBackend(settings).headers is None
        (tmp_path / "mine.token").write_text("the-local-rays-token\n")
        named = Settings(
            local_dashboard_port=port, state_file=settings.state_file, token_file=str(tmp_path / "mine.token")
        )
        assert LocalBackend(named).headers == {"Authorization": "Bearer the-local-rays-token"}
    finally:
        server.shutdown()
        server.server_close()


def test_the_jobs_own_store_credentials_go_to_raybakes_ray_in_a_file_its_runtime_env_names(tmp_path, monkeypatch):
    from raybake.clusters.local import LocalBackend, credentials_file, spec_file
    from raybake.config import Settings
    from raybake.spec import CREDENTIALS_VARIABLE, SPEC_VARIABLE, JobSpec

    for name in [n for n in os.environ if n.startswith(("AWS_", "GOOGLE_", "AZURE_"))]:
        monkeypatch.delenv(name)
    for name, value in CLIENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")
    settings = Settings(local_dashboard_port=free_port(), state_file=str(tmp_path / "state.json"))
    backend = LocalBackend(settings)  # nothing answers on the port: raybake's head will run the job
    spec = JobSpec(corpus="s3://corpus/c.jsonl", output=str(tmp_path / "out"), name="raybake-embed-1")
    placed = backend.prepare(spec)
    assert backend.credentials(placed) == {
        "AWS_PROFILE": "research",
        "AWS_SHARED_CREDENTIALS_FILE": "/home/ada/.aws/research",
        "AWS_ACCESS_KEY_ID": "AKIA0000",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "AWS_SESSION_TOKEN": "aws-session",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
    }
    env = backend.runtime_env(placed)["env_vars"]
    assert env[CREDENTIALS_VARIABLE] == str(credentials_file(settings, "raybake-embed-1"))
    # The options too stay out of the runtime env, which Ray writes into its workers' command
    # lines: the entrypoint names a file of this job's, the driver reads it once.
    assert SPEC_VARIABLE not in env
    assert backend.entrypoint(placed.runs).endswith(f"-m job --spec-from {spec_file(settings, 'raybake-embed-1')}")
    assert "aws-secret" not in str(backend.runtime_env(placed)) and "aws-secret" not in backend.describe(placed)
    # A local corpus and output name no store: nothing goes.
    local = backend.prepare(JobSpec(corpus=str(tmp_path), output=str(tmp_path / "o"), name="raybake-embed-2"))
    assert backend.credentials(local) == {} and CREDENTIALS_VARIABLE not in backend.runtime_env(local)["env_vars"]
