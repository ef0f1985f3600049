"""kind + the pinned KubeRay operator + the built image: `invoke submit --backend rayjob` end to end.

Runs on GitHub-hosted runners (the e2e workflow builds the image first and names it in
RAYBAKE_E2E_IMAGE); skipped where kind is not installed, such as the development machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from raybake.versions import ROOT

pytestmark = [
    pytest.mark.skipif(shutil.which("kind") is None, reason="kind is not on PATH (e2e runs on GitHub runners)"),
    pytest.mark.skipif(not os.environ.get("RAYBAKE_E2E_IMAGE"), reason="RAYBAKE_E2E_IMAGE names no built image"),
]
CLUSTER = "raybake-e2e"
CLAIM = "raybake-e2e"
EXAMPLE_DOCS = 41
# Small pods: a GitHub runner has 4 CPUs and 16 GiB for the node, the operator and the job.
POD_SIZES = {
    "INVOKE_RAYBAKE_HEAD_CPU": "500m",
    "INVOKE_RAYBAKE_HEAD_MEMORY": "2Gi",
    "INVOKE_RAYBAKE_WORKER_CPU": "1",
    "INVOKE_RAYBAKE_WORKER_MEMORY": "4Gi",
}


def invoke(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **POD_SIZES},
    )


@pytest.fixture(scope="module")
def kind_cluster():
    up = invoke("kind-up", "--name", CLUSTER, "--image", os.environ["RAYBAKE_E2E_IMAGE"])
    assert up.returncode == 0, up.stdout + up.stderr
    from kubernetes import client, config

    config.load_kube_config(context=f"kind-{CLUSTER}")
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    client.CoreV1Api().create_namespaced_persistent_volume_claim("default", claim)
    yield CLUSTER
    invoke("kind-down", "--name", CLUSTER)


def test_submit_a_rayjob_over_the_example_corpus(kind_cluster):
    name = f"raybake-e2e-{uuid.uuid4().hex[:8]}"
    done = invoke(
        "submit",
        "--backend",
        "rayjob",
        "--kube-context",
        f"kind-{kind_cluster}",
        "--namespace",
        "default",
        "--image",
        os.environ["RAYBAKE_E2E_IMAGE"],
        "--corpus",
        "examples/corpus",
        "--output",
        f"cluster:/mnt/data/{name}",
        "--pvc",
        CLAIM,
        "--logical-gpus",
        "1",
        "--name",
        name,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert f"done: {EXAMPLE_DOCS} ok, 0 error, 0 missing of {EXAMPLE_DOCS} documents" in done.stdout
    assert f"job {name}: SUCCEEDED" in done.stdout
    status = invoke("status", "--backend", "rayjob", "--namespace", "default", "--job", name)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
