"""Head + 2 workers from the CPU image; the job submitted from the host over the example corpus."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import Built
from raycluster import free_port

from raybake.clusters import backend_for, localcluster
from raybake.clusters.containers import ContainerClusterBackend
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.image.build import docker_client
from raybake.spec import JobSpec
from raybake.submit import submit
from raybake.versions import ROOT


def address_settings(settings: Settings, cluster: localcluster.Cluster) -> Settings:
    return dataclasses.replace(settings, backend="address", address=cluster.url)


def test_cluster_is_labelled_and_only_on_loopback(settings: Settings, cluster: localcluster.Cluster):
    containers = {c.name: c for c in localcluster.find(settings)}
    assert len(containers) == 3
    head = containers[f"{settings.cluster_name}-head"]
    bindings = head.attrs["HostConfig"]["PortBindings"]
    assert bindings == {"8265/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(settings.cluster_dashboard_port)}]}
    workers = [c for c in containers.values() if c.labels[localcluster.ROLE_LABEL] == "worker"]
    assert len(workers) == 2
    assert all(not c.attrs["HostConfig"]["PortBindings"] for c in workers)


def test_the_cluster_refuses_a_request_without_its_token(cluster: localcluster.Cluster):
    # Any local user reaches the bridge network: without the token the head must say 401.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{cluster.url}/api/jobs/", timeout=10)
    assert refused.value.code == 401
    assert localcluster.alive_nodes(cluster.url, token=cluster.token()) == 3


def test_the_token_is_a_read_only_file_in_each_container_never_its_environment(settings, cluster):
    token = cluster.token()
    for container in localcluster.find(settings):
        assert not [v for v in container.attrs["Config"]["Env"] if token in v], container.name
        (mount,) = [m for m in container.attrs["Mounts"] if m["Destination"] == localcluster.TOKEN_MOUNT]
        assert mount["RW"] is False and mount["Source"] == cluster.token_file


def test_a_second_up_is_refused(settings: Settings, cluster: localcluster.Cluster):
    with pytest.raises(RaybakeError, match="already up"):
        localcluster.up(settings, workers=1, image=cluster.image)


def test_every_node_runs_as_the_random_uid(settings: Settings, cluster: localcluster.Cluster, random_user: str):
    for container in localcluster.find(settings):
        assert container.attrs["Config"]["User"] == random_user
        uid = container.exec_run(["id", "-u"]).output.decode().strip()
        assert f"{uid}:0" == random_user


def test_job_from_the_host_runs_in_the_image(
    settings: Settings, cluster: localcluster.Cluster, cpu_image: Built, data_dir: Path, random_user: str
):
    """Nodes under an arbitrary UID (OpenShift's) take the job; nothing is downloaded (the model is
    baked, HF_HUB_OFFLINE=1) and the results are written by that UID."""
    backend = backend_for(address_settings(settings, cluster))
    assert isinstance(backend, ContainerClusterBackend)
    output = data_dir / "out"
    spec = JobSpec(corpus=str(data_dir / "corpus"), output=str(output), name="raybake-docker-test")
    assert submit(backend, spec, follow=True) == 0
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["counts"] == {
        "documents": 41,
        "ok": 41,
        "error": 0,
        "missing": 0,
        "truncated": 0,
        "duplicate_ids": 0,
    }
    assert manifest["image"] == cpu_image.plan.ref
    assert manifest["expected_image"] == cpu_image.plan.ref
    assert all(w["host"].startswith(f"{settings.cluster_name}-worker-") for w in manifest["workers"])
    parts = list((output / "parts").glob("*.parquet"))
    assert parts and sum(p["rows"] for p in manifest["parts"]) == 41
    assert {f"{p.stat().st_uid}:0" for p in parts} == {random_user}


def test_a_corpus_outside_the_mount_is_refused(settings: Settings, cluster: localcluster.Cluster):
    backend = backend_for(address_settings(settings, cluster))
    spec = JobSpec(corpus=str(ROOT / "examples" / "corpus"), output=str(ROOT / "results" / "never"))
    with pytest.raises(RaybakeError, match="outside .*the directory the cluster mounts"):
        backend.prepare(spec)


def test_down_removes_what_up_started(settings: Settings, cpu_image: Built, tmp_path: Path):
    """A cluster of its own (head only), so the session's cluster stays up for the other tests."""
    own = dataclasses.replace(
        settings, cluster_name=f"{settings.cluster_name}-solo", cluster_dashboard_port=free_port()
    )
    try:
        cluster = localcluster.up(own, workers=0, image=cpu_image.plan.ref, data_dir=str(tmp_path))
        assert localcluster.at(own, cluster.url) == cluster
    finally:
        removed = localcluster.down(own)
    assert removed == 1
    assert localcluster.find(own) == []
    assert docker_client().networks.list(names=[own.cluster_name]) == []
    assert localcluster.at(own, cluster.url) is None
