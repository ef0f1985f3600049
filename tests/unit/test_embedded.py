"""The embedded local Ray's environment and ports, decided by raybake, not by the machine."""

from __future__ import annotations

import sys
from pathlib import Path

from raybake.clusters.embedded import SERVICE_PORTS, WORKER_PORTS, head_environ, pick_ports

CLIENT = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/ada",
    "LC_ALL": "C.UTF-8",
    "HF_HOME": "/data/hf",
    "HF_HUB_OFFLINE": "1",
    "AWS_PROFILE": "research",
    "RAY_DEDUP_LOGS": "0",
    # What must stay behind: the client's secrets and the Ray it talks to elsewhere.
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
    kept = {"HOME", "LC_ALL", "HF_HOME", "HF_HUB_OFFLINE", "AWS_PROFILE", "RAY_DEDUP_LOGS"}
    assert {k: env[k] for k in kept} == {k: CLIENT[k] for k in kept}
    assert set(env) == kept | {"PATH", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"}
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
