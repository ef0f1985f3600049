"""Hostile names through KubeRay's submitters: raybake's RayJob, the same request or bash line, a real Ray.

The corpus is named so that any shell that reads it as text runs `touch pwned...`. The RayJob
raybake renders for it goes through KubeRay v1.7's submission (tests/kuberay_submitter) against
a real local head with token auth: the operator's HTTP request (HTTPMode, what raybake renders;
Ray still runs the entrypoint through a shell), and the bash line of KubeRay's default
K8sJobMode, which a `--dry-run` applied without its mode would get. The job must read
exactly that path, and no `pwned*` file may appear. A control run puts the same name raw into
the runtime env, where KubeRay's double quotes still expand `$(...)`: it does make `pwned2`, so
the harness sees a shell that acts, and raybake's runtime env keeps such text out by construction.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from kuberay_submitter import http_submit, run_submitter
from raycluster import clean_environ, start_head

from raybake.clusters.rayjob import RayJobBackend
from raybake.config import Settings
from raybake.spec import JobSpec
from raybake.versions import ROOT

HOSTILE = "a;touch${IFS}pwned $(touch pwned2) \"q\" 'q' &x=1"
EXAMPLE = ROOT / "examples" / "corpus"


def submitter_env(head) -> dict[str, str]:
    """What KubeRay gives the submitter container: token mode and the cluster's token, nothing of ours."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**clean_environ(), "PATH": path, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": head.token}


def rendered(spec: JobSpec, mode: str = "K8sJobMode") -> tuple[dict, dict[str, str]]:
    """raybake's RayJob for the spec, and the image's job/ as this checkout's: a py_module that
    `ray job submit` uploads, or on PYTHONPATH for the operator's request (which uploads nothing);
    and the head container's environment as the kubelet gives it, secretKeyRefs resolved from the
    job's own Secrets (the job's options come from there)."""
    backend = RayJobBackend(Settings(backend="rayjob", image="raybake:test"))
    placed = backend.prepare(spec)
    manifest = backend.manifest(placed)
    runtime_env = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])
    if mode == "HTTPMode":
        runtime_env["env_vars"]["PYTHONPATH"] = str(ROOT)
    else:
        runtime_env["py_modules"] = [str(ROOT / "job")]
    manifest["spec"]["runtimeEnvYAML"] = yaml.safe_dump(runtime_env)
    secrets = {
        s["metadata"]["name"]: s["stringData"] for s in backend.companions(placed, "t0ken") if s["kind"] == "Secret"
    }
    (head,) = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]
    env = {}
    for entry in head["env"]:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        env[entry["name"]] = secrets[ref["name"]][ref["key"]] if ref else entry["value"]
    return manifest, env


def pwned(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("pwned*")]


@pytest.mark.parametrize("mode", ["HTTPMode", "K8sJobMode"])
def test_a_hostile_corpus_name_reaches_the_job_as_data_through_kuberays_submission(tmp_path, mode):
    corpus = tmp_path / HOSTILE
    shutil.copytree(EXAMPLE, corpus)
    out = tmp_path / f"out {HOSTILE}"
    spec = JobSpec(corpus=f"cluster:{corpus}", output=f"cluster:{out}", name=f"rbt-hostile-{mode.lower()}")
    manifest, head_env = rendered(spec, mode)
    assert manifest["spec"]["submissionMode"] == "HTTPMode"
    manifest["spec"]["submissionMode"] = mode
    # Nothing the user named is in the entrypoint or the runtime env (KubeRay's other modes paste
    # both into bash).
    for text in (manifest["spec"]["entrypoint"], manifest["spec"]["runtimeEnvYAML"]):
        assert HOSTILE not in text and "pwned" not in text

    # The head pod's environment, as the kubelet sets it from the job's Secret: the driver's.
    head = start_head(num_cpus=2, auth_mode="token", env=head_env)
    try:
        if mode == "HTTPMode":
            # The operator's request; the job runs in the head's working directory, as on a cluster.
            info = http_submit(manifest, address=head.url, token=head.token or "")
            assert info["status"] == "SUCCEEDED", (info.get("message"), info["logs"][-3000:])
            log = info["logs"]
        else:
            done = run_submitter(manifest, address=head.url, env=submitter_env(head), cwd=tmp_path)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            log = done.stdout
        temp_dir = head.temp_dir
    finally:
        head.stop()
    assert "raybake: done: 41 ok" in log, log[-3000:]
    assert json.loads((out / "manifest.json").read_text())["spec"]["corpus"] == str(corpus)
    assert pwned(tmp_path, ROOT, Path(temp_dir)) == []


def test_the_harness_sees_a_shell_act_on_a_name_in_the_runtime_env(ray_head, tmp_path):
    """The control: the same line with the name raw in the runtime env does run `touch pwned2`."""
    manifest, _ = rendered(JobSpec(corpus="cluster:/nonexistent", output="cluster:/tmp/x", name="rbt-hostile-control"))
    manifest["spec"]["runtimeEnvYAML"] = yaml.safe_dump({"env_vars": {"CORPUS": HOSTILE}})
    manifest["spec"]["entrypoint"] = "python -c pass"
    run_submitter(manifest, address=ray_head.url, env=submitter_env(ray_head), cwd=tmp_path)
    assert (tmp_path / "pwned2").exists()
