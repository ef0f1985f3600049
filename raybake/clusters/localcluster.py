"""A multi-node Ray cluster of containers on the local Docker engine, all from the job image.

One head and N workers on a private bridge network; only the head's dashboard (the job
submission URL) is published, and only on 127.0.0.1. One host directory (the project, by
default) is mounted at the same path in every container, so a path that is valid on the host
is valid in the job, and what the workers write appears on the host.

Ray token auth is on, as on every cluster raybake makes: the containers' IPs on the bridge
network are reachable by any local user, who could otherwise submit jobs that run as you on a
project directory mounted read-write. The token is made at `up`, kept in a file in a folder
only this user opens (beside the state file), mounted read-only into each container
(RAY_AUTH_TOKEN_PATH: never in a container's environment, which `docker inspect` and every job
show) and read by the client from the file; `down` removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raybake import console, poll, state
from raybake.config import RAY_DASHBOARD_PORT, Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.image.build import docker_client as _client
from raybake.private import write_private
from raybake.versions import ROOT

LABEL = "io.raybake.cluster"
ROLE_LABEL = "io.raybake.role"
GCS_PORT = 6379
START_TIMEOUT_S = 180
# Ray's object store lives in /dev/shm; Docker's default 64 MB makes Ray fall back to disk.
SHM_SIZE = "1g"
OBJECT_STORE_BYTES = 256 * 1024**2
USER = re.compile(r"^\d+(:\d+)?$")
# Where each container finds the cluster's token, and what tells Ray to use it.
TOKEN_MOUNT = "/run/raybake/ray-token"
TOKEN_ENVIRONMENT = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": TOKEN_MOUNT, "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass(frozen=True)
class Cluster:
    name: str
    image: str
    url: str
    data_dir: str
    containers: tuple[str, ...]
    # The file holding the cluster's Ray token (empty for a cluster a former raybake started).
    token_file: str = ""

    def token(self) -> str | None:
        path = Path(self.token_file) if self.token_file else None
        return path.read_text().strip() if path and path.is_file() else None


def find(settings: Settings, client: Any = None) -> list[Any]:
    """The containers of this cluster, found by label whether or not the state file knows them."""
    client = client or _client()
    return client.containers.list(all=True, filters={"label": f"{LABEL}={settings.cluster_name}"})


def at(settings: Settings, url: str | None) -> Cluster | None:
    """The `invoke up` cluster whose job submission URL this is, if raybake started one."""
    for entry in state.clusters(settings):
        if url and entry["url"].rstrip("/") == url.rstrip("/"):
            return Cluster(**{**entry, "containers": tuple(entry["containers"])})
    return None


def up(
    settings: Settings,
    *,
    workers: int,
    gpus_per_worker: int = 0,
    image: str | None = None,
    data_dir: str | None = None,
    user: str | None = None,
    env_file: str | None = None,
) -> Cluster:
    """`user`: UID:GID every container runs as (OpenShift's arbitrary UID in group 0, say), else
    the host user's, so files the job writes into the mount belong to whoever ran `invoke up`.
    `env_file`: more environment for every node, as a pod's envFrom gives it (object-store
    credentials): read here, handed to Docker, never printed or written to the state file."""
    import docker

    if workers < 0 or gpus_per_worker < 0:
        raise RaybakeError(
            f"--workers and --gpus-per-worker must be >= 0, got {workers!r}, {gpus_per_worker!r}", ExitCode.REFUSED
        )
    if user is not None and not USER.match(user):
        raise RaybakeError(f"--user must be UID or UID:GID in numbers, got {user!r}", ExitCode.REFUSED)
    image = image or state.image(settings, settings.variant).get("ref")
    if not image:
        raise RaybakeError(
            f"no {settings.variant} image built yet: run `invoke build` first, or pass --image", ExitCode.REFUSED
        )
    client = _client()
    running = find(settings, client)
    if running:
        names = ", ".join(sorted(c.name for c in running))
        raise RaybakeError(
            f"cluster {settings.cluster_name!r} is already up ({names}); `invoke down` removes it", ExitCode.REFUSED
        )
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise RaybakeError(
            f"image {image!r} is not on this Docker engine: build or pull it first", ExitCode.REFUSED
        ) from None
    data = str(Path(data_dir or ROOT).resolve())
    name = settings.cluster_name
    labels = {LABEL: name}
    network = client.networks.create(name, labels=labels) if not client.networks.list(names=[name]) else None
    token_file = new_token_file(settings, other_user=user is not None)
    common = {
        "detach": True,
        "network": name,
        "labels": labels,
        "shm_size": SHM_SIZE,
        "volumes": {data: {"bind": data, "mode": "rw"}, str(token_file): {"bind": TOKEN_MOUNT, "mode": "ro"}},
        "user": user or f"{os.getuid()}:{os.getgid()}",
        "environment": {
            **(read_env_file(Path(env_file)) if env_file else {}),
            **TOKEN_ENVIRONMENT,
        },
    }
    head_name = f"{name}-head"
    console.say(f"starting {head_name} and {workers} worker(s) from {image}")
    started = []
    try:
        started.append(
            _node(
                client,
                image,
                common,
                name=head_name,
                role="head",
                ray_args=[
                    "--head",
                    f"--port={GCS_PORT}",
                    "--dashboard-host=0.0.0.0",
                    f"--dashboard-port={RAY_DASHBOARD_PORT}",
                    "--num-cpus=0",
                    "--num-gpus=0",
                ],
                ports={f"{RAY_DASHBOARD_PORT}/tcp": ("127.0.0.1", settings.cluster_dashboard_port)},
            )
        )
        for index in range(1, workers + 1):
            started.append(
                _node(
                    client,
                    image,
                    common,
                    name=f"{name}-worker-{index}",
                    role="worker",
                    ray_args=[
                        f"--address={head_name}:{GCS_PORT}",
                        f"--num-cpus={settings.cluster_cpus_per_node}",
                        f"--num-gpus={gpus_per_worker}",
                    ],
                    device_requests=gpu_devices(gpus_per_worker),
                )
            )
        url = f"http://127.0.0.1:{settings.cluster_dashboard_port}"
        wait_for_nodes(url, workers + 1, started, token=token_file.read_text())
    except (docker.errors.APIError, RaybakeError) as exc:
        for container in started:
            container.remove(force=True)
        if network is not None:
            network.remove()
        token_file.unlink(missing_ok=True)
        if isinstance(exc, RaybakeError):
            raise
        raise RaybakeError(
            f"could not start cluster {name!r}: {exc.explanation or exc}", ExitCode.UNREACHABLE
        ) from None
    cluster = Cluster(name, image, url, data, tuple(c.name for c in started), str(token_file))
    state.record_cluster(settings, name, {**cluster.__dict__, "containers": list(cluster.containers)})
    return cluster


def read_env_file(path: Path) -> dict[str, str]:
    """Docker's env-file format: KEY=VALUE lines, # comments; a bare KEY takes this machine's value."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise RaybakeError(f"cannot read --env-file {str(path)!r}: {exc.strerror or exc}", ExitCode.REFUSED) from None
    env: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key.replace("_", "a").isalnum() or key[0].isdigit():
            # The line number only: the line may hold a secret.
            raise RaybakeError(f"--env-file {str(path)!r} line {number}: not KEY=VALUE", ExitCode.REFUSED)
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


def token_path(settings: Settings) -> Path:
    return state.path_of(settings).parent / "cluster-tokens" / f"{settings.cluster_name}.ray-token"


def new_token_file(settings: Settings, *, other_user: bool = False) -> Path:
    """A fresh token in a file under a folder only this user opens (0700): the client's copy and
    the containers' read-only mount. Containers that run as another user (`--user`) must read the
    file itself, so theirs is 0644 behind that folder; everyone else's 0600."""
    path = token_path(settings)
    write_private(path, secrets.token_hex(32))
    if other_user:
        path.chmod(0o644)
    return path


def _node(
    client: Any, image: str, common: dict[str, Any], *, name: str, role: str, ray_args: list[str], **extra: Any
) -> Any:
    """One Ray node: `ray start --block` as the container's process, so the container is the node."""
    command = [
        "ray",
        "start",
        *ray_args,
        "--block",
        "--disable-usage-stats",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
    ]
    labels = {**common["labels"], ROLE_LABEL: role}
    return client.containers.run(image, command, name=name, hostname=name, **{**common, "labels": labels}, **extra)


def gpu_devices(count: int) -> list[Any] | None:
    """Real GPUs where the host has NVIDIA's driver; elsewhere Ray's GPUs are only logical."""
    import docker

    if count and shutil.which("nvidia-smi"):
        return [docker.types.DeviceRequest(count=count, capabilities=[["gpu"]])]
    return None


def alive_nodes(url: str, *, token: str) -> int:
    request = urllib.request.Request(f"{url}/api/v0/nodes?limit=1000", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            nodes = json.load(response)["data"]["result"]["result"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum(1 for node in nodes if node.get("state") == "ALIVE")


def wait_for_nodes(url: str, expected: int, containers: list[Any], *, token: str) -> None:
    alive = 0

    def count() -> int:
        """The nodes alive so far; a container that exited ends the wait at once."""
        nonlocal alive
        for container in containers:
            container.reload()
            if container.status == "exited":
                tail = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
                raise RaybakeError(f"container {container.name!r} exited: {tail}", ExitCode.UNREACHABLE)
        alive = alive_nodes(url, token=token)
        return alive

    poll.until(
        count,
        done=lambda n: n >= expected,
        every_s=1.0,
        within_s=START_TIMEOUT_S,
        gave_up=lambda: RaybakeError(
            f"only {alive} of {expected} Ray nodes joined within {START_TIMEOUT_S}s; "
            f"see `docker logs {containers[0].name}`",
            ExitCode.UNREACHABLE,
        ),
    )
    console.say(f"{expected} Ray node(s) alive; dashboard {url}")


def down(settings: Settings) -> int:
    """Remove the cluster's containers and network; the number of containers removed.

    No engine answering means no containers: `invoke down` also serves machines without Docker.
    """
    import docker

    try:
        client = _client()
    except RaybakeError:
        return 0
    containers = find(settings, client)
    for container in containers:
        container.remove(force=True)
    for network in client.networks.list(filters={"label": f"{LABEL}={settings.cluster_name}"}):
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()
    state.record_cluster(settings, settings.cluster_name, None)
    token_path(settings).unlink(missing_ok=True)
    return len(containers)
