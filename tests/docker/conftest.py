"""The docker tier's engine, image and cluster: real, made once per session, always torn down.

scripts/docker-engine.sh is the same setup `.ci/run` calls, so this tier also runs alone.
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import s3server
from raycluster import free_port

from raybake.clusters import localcluster
from raybake.config import Settings
from raybake.image import build as image
from raybake.image.build import docker_client
from raybake.versions import ROOT


@pytest.fixture(scope="session")
def base_image() -> str:
    """The base image this machine tests: rayproject/ray's CPU image where it can be pulled (the
    production base), else the local Debian stand-in; the script's last line names it."""
    done = subprocess.run([str(ROOT / "scripts" / "docker-engine.sh")], stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        pytest.fail(f"scripts/docker-engine.sh failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return re.fullmatch(r"base image (\S+): \d+ bytes", done.stdout.strip().splitlines()[-1]).group(1)


@pytest.fixture(scope="session")
def settings(base_image, tmp_path_factory) -> Settings:
    """Settings of this session: its own state file, cluster name and dashboard port."""
    return Settings(
        state_file=str(tmp_path_factory.mktemp("state") / "state.json"),
        cluster_name=f"raybake-test-{os.getpid()}",
        cluster_dashboard_port=free_port(),
    )


@dataclasses.dataclass(frozen=True)
class Built:
    plan: image.BuildPlan
    output: str


@pytest.fixture(scope="session")
def cpu_image(settings: Settings, base_image: str) -> Built:
    """The CPU variant with the default model baked in, from the local base and the wheelhouse."""
    plan = image.plan(settings, variant="cpu", base_image=base_image, torch_index="", bake_model=True)
    out = io.StringIO()
    image.build(settings, plan, out=out)
    return Built(plan, out.getvalue())


@pytest.fixture(scope="session")
def random_user() -> str:
    """An arbitrary UID in group 0 with no passwd entry, as OpenShift's restricted SCC assigns."""
    return f"{random.randrange(1_000_000_000, 2_000_000_000)}:0"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """The directory the cluster mounts: the example corpus, and room for outputs.

    Writable by any UID, as a volume is for OpenShift's pods (its fsGroup): the containers run
    as `random_user`, not as whoever runs the tests.
    """
    data = tmp_path_factory.mktemp("data")
    shutil.copytree(ROOT / "examples" / "corpus", data / "corpus")
    data.chmod(0o777)
    return data


@pytest.fixture(scope="session")
def s3(settings: Settings, base_image: str) -> s3server.S3Server:
    """moto's S3 server where the cluster's containers reach it and nothing else does: on the
    gateway address of the cluster's own bridge network (made here, so its address is known
    before the cluster starts; `up` uses it, `down` removes it by its label)."""
    client = docker_client()
    network = client.networks.create(settings.cluster_name, labels={localcluster.LABEL: settings.cluster_name})
    network.reload()
    server = s3server.start(host=network.attrs["IPAM"]["Config"][0]["Gateway"])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster(
    settings: Settings, cpu_image: Built, data_dir: Path, random_user: str, s3: s3server.S3Server, tmp_path_factory
) -> localcluster.Cluster:
    """Head + 2 workers under a random UID in group 0; removed at the end of the session even
    when a test failed.

    The nodes get the S3 credentials from an env file, as a RayJob's pods get them from a Secret.
    """
    env_file = tmp_path_factory.mktemp("secret") / "s3.env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in s3.credentials().items()))
    try:
        yield localcluster.up(
            settings,
            workers=2,
            image=cpu_image.plan.ref,
            data_dir=str(data_dir),
            user=random_user,
            env_file=str(env_file),
        )
    finally:
        localcluster.down(settings)
