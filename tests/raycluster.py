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
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

AUTH_MODES = ("token", "disabled")
TOKEN_NAME = "auth_token"


def auth_env(auth_mode: str, token_file: Path | None) -> dict[str, str]:
    """The variables that tell a Ray process (head, driver) this cluster's auth, and nothing else's."""
    env = {"RAY_AUTH_MODE": auth_mode}
    if auth_mode == "token" and token_file:
        env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        return {
            **clean_environ(),
            **self.auth_env(),
            "INVOKE_RAYBAKE_LOCAL_DASHBOARD_PORT": str(self.dashboard_port),
            "INVOKE_RAYBAKE_RESULTS_DIR": str(results_dir),
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


def clean_environ() -> dict[str, str]:
    """The test process's environment without any Ray auth or address it may have inherited."""
    inherited = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")
    return {k: v for k, v in os.environ.items() if k not in inherited}


def dashboard_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


PORT_NAMES = (
    "port",
    "dashboard-port",
    "ray-client-server-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "node-manager-port",
    "object-manager-port",
)
WORKER_PORTS = 200
START_ATTEMPTS = 3


def pick_ports() -> tuple[dict[str, int], int]:
    """Free ports for the head's services, none inside its workers' port range."""
    low = free_port()
    ports: dict[str, int] = {}
    while len(ports) < len(PORT_NAMES):
        port = free_port()
        if not low <= port <= low + WORKER_PORTS and port not in ports.values():
            ports[PORT_NAMES[len(ports)]] = port
    return ports, low


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
    ports, low = pick_ports()
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
    log = Path(temp_dir, "start.log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**clean_environ(), **env, **auth_env(auth_mode, token_file)},
        )
    head = RayHead(process, ports["dashboard-port"], ports["port"], temp_dir, auth_mode)
    deadline = time.monotonic() + timeout
    while not dashboard_up(head.url):
        if process.poll() is not None or time.monotonic() > deadline:
            head.stop()
            raise RuntimeError(f"test Ray head did not start (exit {process.poll()}):\n{log.read_text()[-2000:]}")
        time.sleep(0.5)
    return head


def invoke(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`invoke <args>` from the repository root, as a user runs it."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )
