"""kind + the pinned KubeRay operator + the built image: `invoke submit --backend rayjob` end to end.

It runs as raybake's documented Role (deploy/rbac/role.yaml, bound to a ServiceAccount) in a
namespace that enforces Pod Security "restricted", as `invoke kind.up` makes them.

Runs on GitHub-hosted runners after `invoke build --variant cpu` (e2e-kind.yml); skipped where
kind is not installed, such as the development machine. RAYBAKE_E2E_IMAGE names another image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from raybake.config import Settings
from raybake.image.pushed import local_image
from raybake.kube import kind
from raybake.versions import ROOT

IMAGE = os.environ.get("RAYBAKE_E2E_IMAGE") or local_image(Settings(), "cpu")
pytestmark = [
    pytest.mark.skipif(shutil.which("kind") is None, reason="kind is not on PATH (e2e runs on GitHub runners)"),
    pytest.mark.skipif(not IMAGE, reason="no image: run `invoke build --variant cpu` first"),
]
CLAIM = "raybake-e2e"
EXAMPLE_DOCS = 41
# Small pods: a GitHub runner has 4 CPUs and 16 GiB for the node, the operator and the job.
POD_SIZES = {
    "INVOKE_RAYBAKE_HEAD_CPU": "500m",
    "INVOKE_RAYBAKE_HEAD_MEMORY": "2Gi",
    "INVOKE_RAYBAKE_WORKER_CPU": "1",
    "INVOKE_RAYBAKE_WORKER_MEMORY": "4Gi",
}


def invoke(
    *args: str, timeout: float = 1500, kubeconfig: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`kubeconfig`: run as that account (the ServiceAccount's) instead of the runner's admin."""
    env = {**os.environ, **POD_SIZES, **({"KUBECONFIG": kubeconfig} if kubeconfig else {}), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def kind_cluster():
    """The cluster e2e-kind.yml made with `invoke kind.up` (made here if not); kept for kind-dump."""
    up = invoke("kind.up", "--image", IMAGE)
    assert up.returncode == 0, up.stdout + up.stderr
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    cluster = Settings().kind_cluster
    config.load_kube_config(context=kind.context(cluster))
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    try:
        # As the admin: the Role makes no claims, the job only mounts one.
        client.CoreV1Api().create_namespaced_persistent_volume_claim(kind.NAMESPACE, claim)
    except ApiException as exc:
        if exc.status != 409:
            raise
    return cluster


def test_the_namespace_enforces_restricted_and_the_account_reads_no_secret(kind_cluster):
    from kubernetes import client

    labels = client.CoreV1Api().read_namespace(kind.NAMESPACE).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    as_account = {**os.environ, "KUBECONFIG": str(kind.kubeconfig_path(kind_cluster))}
    for verb, resource, answer in (
        ("get", "secrets", "no"),
        ("list", "secrets", "no"),
        ("create", "rayjobs.ray.io", "yes"),
    ):
        done = subprocess.run(
            ["kubectl", "auth", "can-i", verb, resource], capture_output=True, text=True, env=as_account
        )
        assert done.stdout.strip() == answer, (verb, resource, done.stdout, done.stderr)


def test_submit_a_rayjob_over_the_example_corpus(kind_cluster):
    name = f"raybake-e2e-{uuid.uuid4().hex[:8]}"
    account = str(kind.kubeconfig_path(kind_cluster))
    done = invoke(
        "submit",
        "--backend",
        "rayjob",
        "--namespace",
        kind.NAMESPACE,
        "--image",
        IMAGE,
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
        kubeconfig=account,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert f"done: {EXAMPLE_DOCS} ok, 0 error, 0 missing of {EXAMPLE_DOCS} documents" in done.stdout
    assert f"job {name}: SUCCEEDED" in done.stdout
    status = invoke("status", "--backend", "rayjob", "--namespace", kind.NAMESPACE, "--job", name, kubeconfig=account)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout


def test_a_team_cluster_up_submit_by_name_upgrade_and_down(kind_cluster):
    """`invoke cluster`: an autoscaling RayCluster (a CPU group from 0, kind has no GPUs), a submit by
    name that the autoscaler makes room for, an upgrade to a second tag of the image, and down."""
    team = "raybake-team-e2e"
    # In the namespace that enforces Pod Security restricted, as the admin (the Role is the jobs').
    where = ("--name", team, "--kube-context", kind.context(kind_cluster), "--namespace", kind.NAMESPACE)
    shape = ("--max-gpus", "0", "--max-cpu-workers", "1", "--idle-timeout", "60")
    claim = {"INVOKE_RAYBAKE_PVC": CLAIM}
    up = invoke("cluster", "up", *where, *shape, "--image", IMAGE, env=claim)
    assert up.returncode == 0 and f"created RayCluster {team}" in up.stdout, up.stdout + up.stderr
    try:
        again = invoke("cluster", "up", *where, *shape, "--image", IMAGE, env=claim)
        assert again.returncode == 0 and "exists" in again.stdout, again.stdout + again.stderr
        wait_for_head(where)
        job = f"raybake-team-{uuid.uuid4().hex[:8]}"
        done = invoke(
            "submit",
            "--cluster",
            team,
            *where[2:],
            "--corpus",
            "examples/corpus",
            "--output",
            f"cluster:/mnt/data/{job}",
            "--name",
            job,
            env=claim,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert f"job {job}: SUCCEEDED" in done.stdout
        second = f"{IMAGE.rsplit(':', 1)[0]}:e2e-upgrade"
        subprocess.run(["docker", "tag", IMAGE, second], check=True)
        subprocess.run(["kind", "load", "docker-image", "--name", kind_cluster, second], check=True)
        upgraded = invoke("cluster", "upgrade", *where, *shape, "--image", second, env=claim)
        assert upgraded.returncode == 0 and f"-> {second}" in upgraded.stdout, upgraded.stdout + upgraded.stderr
        status = invoke("cluster", "status", *where)
        assert status.returncode == 0 and f"image {second}" in status.stdout, status.stdout + status.stderr
    finally:
        down = invoke("cluster", "down", *where)
    assert down.returncode == 0 and f"deleted RayCluster {team}" in down.stdout, down.stdout + down.stderr


def wait_for_head(where: tuple[str, ...], timeout_s: float = 900) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = invoke("cluster", "status", *where)
        if "head: Running" in status.stdout:
            return
        time.sleep(10)
    raise AssertionError(f"the team cluster's head did not run in {timeout_s}s: {status.stdout}{status.stderr}")
