"""The address backend against a real local Ray head: token auth, Ray version, uploads, port-forward.

Only Kubernetes is stood in for (tests/fakekube.py); Ray, its job API, the upload of the corpus
and the job itself are real. The head is the session's `ray_head` (its own free ports).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fakekube import FakeKube

from raybake import state
from raybake.clusters import address, rayjob
from raybake.clusters.address import AddressBackend, through_port_forward
from raybake.clusters.rayjob import RayJobBackend
from raybake.clusters.transport import MIB
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.kube.portforward import Forward
from raybake.spec import JobSpec
from raybake.submit import submit
from raybake.versions import ROOT, git_sha, ray_version, raybake_version

IMAGE = "registry.example/raybake@sha256:" + "c" * 64
TOKEN_ENV = "RAYBAKE_TEST_RAY_TOKEN"
EXAMPLE_DOCS = 41  # examples/corpus: 40 jsonl records and one txt file


@pytest.fixture
def settings(ray_head, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, ray_head.token or "")
    return Settings(backend="address", address=ray_head.url, token_env=TOKEN_ENV, ship_job=True, image=IMAGE)


@pytest.fixture
def corpus(tmp_path):
    """examples/corpus plus what an upload must leave behind: version control and old results."""
    folder = tmp_path / "corpus"
    shutil.copytree(ROOT / "examples" / "corpus", folder)
    for skipped in (".git", "results"):
        (folder / skipped).mkdir()
        (folder / skipped / "extra.txt").write_text("a document that must not be uploaded")
    return folder


def connect_to(head):
    return lambda: socket.create_connection(("127.0.0.1", head.dashboard_port))


def test_version_check_with_the_right_token(settings):
    assert AddressBackend(settings, settings.address).ray_version() == ray_version()


@pytest.mark.parametrize(("token", "answer"), [("wrong-token", "Invalid authentication token"), ("", "Missing")])
def test_a_wrong_or_missing_token_is_refused_in_one_line(settings, monkeypatch, token, answer):
    monkeypatch.setenv(TOKEN_ENV, token)
    monkeypatch.setattr(address, "read_token", lambda *a, **k: token or None)
    with pytest.raises(RaybakeError) as refused:
        AddressBackend(settings, settings.address).ray_version()
    assert refused.value.code == 3
    assert "refused" in str(refused.value) and answer in str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_cli_says_a_wrong_token_in_one_line(ray_head, tmp_path):
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RAY_AUTH_TOKEN": "wrong-token",
    }
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "status", "--job", "nothing", "--address", ray_head.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raybake: the Ray cluster at"), done.stderr
    assert "wrong-token" not in done.stderr + done.stdout  # a secret is never printed


def test_another_ray_version_is_refused_unless_allowed(settings, monkeypatch, capsys):
    monkeypatch.setattr(address, "ray_version", lambda: "0.0.1")
    with pytest.raises(RaybakeError, match=rf"refused: the cluster runs Ray {ray_version()}, this checkout pins"):
        AddressBackend(settings, settings.address).check_cluster()
    allowed = Settings(**{**settings.__dict__, "allow_image_mismatch": True})
    AddressBackend(allowed, settings.address).check_cluster()
    assert "warning: the cluster runs Ray" in capsys.readouterr().out


def test_a_small_local_corpus_is_uploaded_without_git_and_results(settings, corpus, tmp_path):
    out = tmp_path / "out"
    spec = JobSpec(corpus=str(corpus), output=f"cluster:{out}", name="rbt-upload")
    with AddressBackend(settings, settings.address) as chosen:
        assert submit(chosen, spec) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["documents"] == EXAMPLE_DOCS
    assert manifest["counts"]["ok"] == EXAMPLE_DOCS
    # The client tells the job who sent it; the manifest keeps it.
    assert (manifest["raybake_version"], manifest["git_sha"]) == (raybake_version(), git_sha())


def test_over_the_upload_limit_nothing_is_submitted(settings, corpus, tmp_path):
    (corpus / "big.txt").write_bytes(b"word " * (MIB // 5 + 1))
    limited = Settings(**{**settings.__dict__, "upload_limit_mib": 1})
    chosen = AddressBackend(limited, settings.address)
    before = len(chosen.client.list_jobs())
    with pytest.raises(RaybakeError, match="over the 1 MiB upload limit"):
        submit(chosen, JobSpec(corpus=str(corpus), output=f"cluster:{tmp_path}/out", name="rbt-too-big"))
    assert len(chosen.client.list_jobs()) == before


def test_a_port_forward_carries_the_job_api_and_closes(settings, ray_head):
    forward = Forward(connect_to(ray_head))
    chosen = AddressBackend(settings, forward.url, forward=forward)
    assert chosen.ray_version() == ray_version()
    assert isinstance(chosen.jobs(), list)  # Ray's own client, through the relay
    chosen.close()
    with pytest.raises(RaybakeError, match="cannot reach"):
        AddressBackend(settings, forward.url).ray_version()


def pod(image: str) -> dict:
    return {"metadata": {"name": "c-head"}, "spec": {"containers": [{"name": "ray-head", "image": image}]}}


def test_a_cluster_by_name_running_another_image_is_refused(settings, ray_head):
    kube = FakeKube(pods=[pod("registry.example/raybake:old")], connect=connect_to(ray_head))
    with (
        through_port_forward(settings, kube, "c") as chosen,
        pytest.raises(RaybakeError, match=r"pods run registry.example/raybake:old, not the image built here"),
    ):
        chosen.check_cluster()
    kube = FakeKube(pods=[pod(IMAGE)], connect=connect_to(ray_head))
    with through_port_forward(settings, kube, "c") as chosen:
        chosen.check_cluster()


class OperatorOverRealRay(FakeKube):
    """KubeRay's InteractiveMode, played by the test: Waiting until the job id is set, then Ray's status.

    `slow`: the operator's status lags behind Ray's, so a short job is seen only once it ended.
    """

    def __init__(self, head, *, slow: bool = False, **kw):
        super().__init__(pods=[pod(IMAGE)], connect=connect_to(head), **kw)
        self.head = head
        self.slow = slow

    def status_now(self):
        job_ids = [p["spec"]["jobId"] for p in self.patches if "jobId" in p.get("spec", {})]
        if not job_ids:
            return {"jobDeploymentStatus": "Waiting", "rayClusterName": "c"}
        with AddressBackend(Settings(token_env=TOKEN_ENV), self.head.url) as ray:
            ray_status = ray.status(job_ids[0]).status
            done = ray_status in ("SUCCEEDED", "FAILED", "STOPPED")
            while self.slow and not done:
                time.sleep(0.5)
                ray_status = ray.status(job_ids[0]).status
                done = ray_status in ("SUCCEEDED", "FAILED", "STOPPED")
        return {
            "jobDeploymentStatus": "Complete" if done else "Running",
            "jobStatus": ray_status,
            "jobId": job_ids[0],
            "rayClusterName": "c",
        }


@pytest.mark.parametrize("slow", [False, True], ids=["streamed", "ended-between-polls"])
def test_a_rayjob_with_a_local_corpus_uploads_it_through_the_port_forward(
    settings, ray_head, corpus, tmp_path, capfd, monkeypatch, slow
):
    monkeypatch.setattr(rayjob, "POLL_S", 0.2)
    # KubeRay's cluster takes its token from the job's Secret; this test's head has one already, so
    # the job's token is that one, and raybake's port-forward must send it from its own state.
    monkeypatch.setattr(rayjob.secrets, "token_urlsafe", lambda nbytes: ray_head.token)
    monkeypatch.setattr(state, "ROOT", tmp_path)
    kube = OperatorOverRealRay(ray_head, slow=slow)
    out = tmp_path / "out"
    name = f"rbt-interactive-{'slow' if slow else 'live'}"
    spec = JobSpec(corpus=str(corpus), output=f"cluster:{out}", name=name)
    with RayJobBackend(Settings(**{**settings.__dict__, "backend": "rayjob"}), kube=kube) as chosen:
        assert submit(chosen, spec) == 0
    (created,) = kube.created
    assert created["spec"]["submissionMode"] == "InteractiveMode"
    assert kube.patches == [{"spec": {"jobId": name}}]
    printed = capfd.readouterr().out
    assert f"done: {EXAMPLE_DOCS} ok" in printed  # the job's log, streamed through the relay
    assert f"job {name}: SUCCEEDED" in printed
    assert json.loads((out / "manifest.json").read_text())["counts"]["ok"] == EXAMPLE_DOCS
    # One forward to submit, one for the logs; both closed when done with.
    assert len(kube.forwards) == 2 and all(f.closed for f in kube.forwards)


def test_dry_run_shows_the_submission_without_the_token(settings, corpus, capsys, ray_head):
    spec = JobSpec(corpus=str(corpus), output="s3://bucket/out", name="rbt-dry")
    assert submit(AddressBackend(settings, settings.address), spec, dry_run=True) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["runtime_env"]["working_dir"] == str(corpus)
    assert ray_head.token not in json.dumps(shown)


def test_stop_with_delete_removes_the_job(settings):
    chosen = AddressBackend(settings, settings.address)
    job = chosen.client.submit_job(entrypoint="sleep 120", submission_id="rbt-delete-me")
    assert chosen.stop(job, delete=True)
    with pytest.raises(RaybakeError, match="no job 'rbt-delete-me'"):
        chosen.status(job)
