"""Finding the `invoke up` cluster by its URL, and the backend that knows its image and mount."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from raybake import state
from raybake.clusters import backend_for, localcluster
from raybake.clusters.address import AddressBackend
from raybake.clusters.base import Placed
from raybake.clusters.containers import ContainerClusterBackend
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.spec import JobSpec

URL = "http://127.0.0.1:18266"
SPEC = JobSpec(corpus="s3://bucket/corpus", output="s3://bucket/out")
ANYWHERE = Placed(named=SPEC, runs=SPEC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(state_file=str(tmp_path / "state.json"))
    cluster = localcluster.Cluster("raybake", "raybake:cpu-0123456789ab", URL, str(tmp_path / "data"), ("h", "w"))
    state.record_cluster(settings, "raybake", {**cluster.__dict__, "containers": list(cluster.containers)})
    return settings


def test_the_cluster_is_found_by_its_url(settings: Settings):
    assert localcluster.at(settings, URL + "/").image == "raybake:cpu-0123456789ab"
    assert localcluster.at(settings, "http://127.0.0.1:8265") is None
    assert localcluster.at(settings, None) is None


def test_its_address_gets_the_container_backend_with_the_expected_image(settings: Settings):
    backend = backend_for(dataclasses.replace(settings, backend="address", address=URL))
    assert isinstance(backend, ContainerClusterBackend)
    env = backend.runtime_env(ANYWHERE)["env_vars"]
    assert env["RAYBAKE_EXPECTED_IMAGE"] == "raybake:cpu-0123456789ab"


def test_another_address_sends_only_a_configured_expected_image(settings: Settings):
    other = dataclasses.replace(settings, backend="address", address="http://127.0.0.1:8265")
    backend = backend_for(other)
    assert type(backend) is AddressBackend
    assert "RAYBAKE_EXPECTED_IMAGE" not in backend.runtime_env(ANYWHERE)["env_vars"]
    pinned = backend_for(dataclasses.replace(other, expected_image="REGISTRY/ORG/raybake:cpu-0123456789ab"))
    env = pinned.runtime_env(ANYWHERE)["env_vars"]
    assert env["RAYBAKE_EXPECTED_IMAGE"] == "REGISTRY/ORG/raybake:cpu-0123456789ab"


def test_paths_under_the_mount_pass_and_others_are_refused(settings: Settings, tmp_path: Path):
    backend = backend_for(dataclasses.replace(settings, backend="address", address=URL))
    inside = JobSpec(corpus=str(tmp_path / "data" / "corpus"), output=str(tmp_path / "data" / "out"), name="n")
    assert backend.prepare(inside).runs == inside
    remote = backend.prepare(JobSpec(corpus="s3://bucket/corpus", output=str(tmp_path / "data" / "out")))
    assert remote.runs.corpus == "s3://bucket/corpus"
    with pytest.raises(RaybakeError, match="--corpus '/elsewhere/corpus' is outside"):
        backend.prepare(JobSpec(corpus="/elsewhere/corpus", output=str(tmp_path / "data" / "out")))


def test_down_without_a_docker_engine_removes_nothing_and_does_not_fail(settings: Settings, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert localcluster.down(settings) == 0


def test_the_docker_cluster_asks_for_a_token_of_its_own_that_only_its_client_reads(settings: Settings, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "planted-user-token")
    path = localcluster.new_token_file(settings)
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_text()) == 64
    assert path.parent.stat().st_mode & 0o777 == 0o700
    # Containers as another user read the file itself: only the folder keeps others out.
    assert localcluster.new_token_file(settings, other_user=True).stat().st_mode & 0o777 == 0o644
    # The containers read it from a read-only mount, never from their environment.
    env = localcluster.TOKEN_ENVIRONMENT
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == localcluster.TOKEN_MOUNT
    assert path.read_text() not in str(env)
    path = localcluster.new_token_file(settings)
    cluster = dataclasses.replace(localcluster.at(settings, URL), token_file=str(path))
    state.record_cluster(settings, "raybake", {**cluster.__dict__, "containers": list(cluster.containers)})
    backend = backend_for(dataclasses.replace(settings, backend="address", address=URL))
    assert backend.headers == {"Authorization": f"Bearer {path.read_text()}"}


@pytest.mark.parametrize("user", ["ray", "1000:root", "-1:0", "1000:0:0", ""])
def test_a_user_that_is_not_numeric_uid_gid_is_refused_before_docker(settings: Settings, user: str):
    with pytest.raises(RaybakeError, match=f"--user must be UID or UID:GID in numbers, got {user!r}"):
        localcluster.up(settings, workers=1, image="raybake:cpu-0123456789ab", user=user)
