"""A real Ray head for the tests, isolated from any other Ray on this machine.

Every port is picked free and the head runs under `ray start --block` in its own process
group, so teardown ends exactly this cluster (never a global `ray stop`, which would also end
a user's cluster or another test session's).

Every head declares its auth mode: `token` heads get a token of their own in a file of their
own (RAY_AUTH_TOKEN_PATH), `disabled` heads say so. Nothing reads or writes the user's ~/.ray:
whether Ray turns auth on by itself depends on that file, and a test must not depend on the
machine it runs on.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from raybake.clusters.embedded import SERVICE_PORTS, WORKER_PORTS, answers, free_port, pick_ports

AUTH_MODES = ("token", "disabled")
TOKEN_NAME = "auth_token"


def auth_env(auth_mode: str, token_file: Path | None) -> dict[str, str]:
    """The variables that tell a Ray process (head, driver) this cluster's auth, and nothing else's."""
    env = {"RAY_AUTH_MODE": auth_mode}
    if auth_mode == "token" and token_file:
        env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    return env


@dataclass
class RayHead:
    process: subprocess.Popen
    dashboard_port: int
    gcs_port: int
    temp_dir: str
    auth_mode: str = "token"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def token_file(self) -> Path | None:
        return Path(self.temp_dir, TOKEN_NAME) if self.auth_mode == "token" else None

    @property
    def token(self) -> str | None:
        return self.token_file.read_text().strip() if self.token_file else None

    def auth_env(self) -> dict[str, str]:
        return auth_env(self.auth_mode, self.token_file)

    def job_env(self) -> dict[str, str]:
        """Environment for a `python -m job` driver that should join this cluster."""
        return {**clean_environ(), "RAY_ADDRESS": self.address, **self.auth_env()}

    def invoke_env(self, results_dir: Path, **extra: str) -> dict[str, str]:
        """Environment for `invoke` tasks whose local backend is this cluster, results under results_dir."""
        # The token as a file named for raybake: the local backend sends none from the
        # environment to a Ray it did not start.
        token = {"INVOKE_RAYBAKE_TOKEN_FILE": str(self.token_file)} if self.token_file else {}
        return {
            **clean_environ(),
            **self.auth_env(),
            **token,
            "INVOKE_RAYBAKE_LOCAL_DASHBOARD_PORT": str(self.dashboard_port),
            "INVOKE_RAYBAKE_RESULTS_DIR": str(results_dir),
            # Not the checkout's .raybake/: what raybake remembers stays with the test.
            "INVOKE_RAYBAKE_STATE_FILE": str(Path(results_dir).parent / "raybake-state.json"),
            **extra,
        }

    def stop(self) -> None:
        """`ray start --block` shuts its own processes down on SIGTERM (signalling the whole group
        instead kills the GCS under it and it waits 30 s for it); what outlives it is killed."""
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def clean_environ() -> dict[str, str]:
    """The test process's environment without any Ray auth or address it may have inherited."""
    inherited = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")
    return {k: v for k, v in os.environ.items() if k not in inherited}


PORT_NAMES = ("port", "dashboard-port", *SERVICE_PORTS)
START_ATTEMPTS = 3


def start_head(
    num_cpus: int = 2, *, auth_mode: str, timeout: float = 120, env: dict[str, str] | None = None
) -> RayHead:
    """A head on free ports; a port taken between picking and binding costs one more attempt.

    `env`: more environment for the head and so for every job's driver and workers, as a pod's
    envFrom gives it (object-store credentials)."""
    if auth_mode not in AUTH_MODES:
        raise ValueError(f"auth_mode must be one of {AUTH_MODES}, got {auth_mode!r}")
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return _start_head(num_cpus, auth_mode, timeout, env or {})
        except RuntimeError:
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _start_head(num_cpus: int, auth_mode: str, timeout: float, env: dict[str, str]) -> RayHead:
    ports, low = pick_ports(PORT_NAMES)
    temp_dir = tempfile.mkdtemp(prefix="rbt-", dir="/tmp")
    token_file = Path(temp_dir, TOKEN_NAME)
    if auth_mode == "token":
        token_file.touch(mode=0o600)
        token_file.write_text(secrets.token_hex(32))
    ray = str(Path(sys.executable).parent / "ray")
    command = [
        ray,
        "start",
        "--head",
        "--block",
        "--dashboard-host",
        "127.0.0.1",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        # A narrow worker port range of our own keeps clear of other clusters' workers.
        f"--min-worker-port={low}",
        f"--max-worker-port={low + WORKER_PORTS}",
    ]
    command += [f"--{name}={port}" for name, port in ports.items()]
    environment = {**clean_environ(), **env, **auth_env(auth_mode, token_file)}
    return _launch(command, environment, ports, temp_dir, auth_mode, timeout)


AGENT_HEALTH = "/api/local_raylet_healthz"
# Ray's default port for a head's dashboard agent: every plain `ray start` takes it.
DEFAULT_AGENT_PORT = 52365


def start_users_head(timeout: float = 120) -> RayHead:
    """A head as a user starts one beside raybake: plain `ray start --head`, Ray's defaults.

    Only the ports another test session may hold at the same time are its own; the dashboard
    agent keeps Ray's default port where that is free, as a user's head has it. Its HOME has no
    ~/.ray/auth_token, so Ray starts it without auth, as on a machine that never made a token.
    """
    names = ("port", "dashboard-port", "ray-client-server-port")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", DEFAULT_AGENT_PORT)) == 0:
            names += ("dashboard-agent-listen-port",)
    ports = dict(zip(names, (free_port() for _ in names), strict=True))
    temp_dir = tempfile.mkdtemp(prefix="rbt-user-", dir="/tmp")
    ray = str(Path(sys.executable).parent / "ray")
    command = [ray, "start", "--head", "--block", "--disable-usage-stats", f"--temp-dir={temp_dir}", "--num-cpus=1"]
    command += [f"--{name}={port}" for name, port in ports.items()]
    return _launch(command, {**clean_environ(), "HOME": temp_dir}, ports, temp_dir, "disabled", timeout)


def _launch(command: list[str], env: dict[str, str], ports: dict[str, int], temp_dir: str, auth_mode: str, timeout):
    log = Path(temp_dir, "start.log")
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    head = RayHead(process, ports["dashboard-port"], ports["port"], temp_dir, auth_mode)
    deadline = time.monotonic() + timeout
    # The job API takes jobs once the head's job agent answers too ("No available agent" before):
    # on a busy machine that is well after the dashboard (raybake's embedded Ray waits alike).
    agent = ports.get("dashboard-agent-listen-port")
    while not (answers(head.url) and (agent is None or answers(f"http://127.0.0.1:{agent}", path=AGENT_HEALTH))):
        if process.poll() is not None or time.monotonic() > deadline:
            text = log.read_text()[-2000:]
            head.stop()
            raise RuntimeError(f"test Ray head did not start (exit {process.poll()}):\n{text}")
        time.sleep(0.5)
    return head


def invoke(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`invoke <args>` from the repository root, as a user runs it."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )


def listening(group: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket that a process of the group listens on, from /proc:
    the kernel's socket tables (state 0A: LISTEN) joined to the processes' open sockets."""
    tables = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] != "0A":
                continue
            address, port = fields[1].split(":")
            packed = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
            tables[fields[9]] = (socket.inet_ntop(family, packed), int(port, 16))
    bound = set()
    for pid in group_members(group):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in tables:
                        bound.add(tables[link[8:-1]])
    return bound


def group_members(group: int) -> list[int]:
    """The live processes of a process group (the head's: GCS, raylet, agents, workers, drivers)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == group:
                    members.append(int(entry.name))
    return members
