"""A real Ray head for the tests, isolated from any other Ray on this machine.

Every port is picked free and the head runs under `ray start --block` in its own process
group, so teardown ends exactly this cluster (never a global `ray stop`, which would also end
a user's cluster or another test session's).
"""

from __future__ import annotations

import contextlib
import os
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

TOKEN_FILE = Path("~/.ray/auth_token").expanduser()


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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def token(self) -> str | None:
        return TOKEN_FILE.read_text().strip() if TOKEN_FILE.is_file() else None

    def job_env(self) -> dict[str, str]:
        """Environment for a `python -m job` driver that should join this cluster."""
        # `ray start` turns token auth on; a driver joining from outside must opt in to it.
        return {**os.environ, "RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token"}

    def invoke_env(self, results_dir: Path, **extra: str) -> dict[str, str]:
        """Environment for `invoke` tasks whose local backend is this cluster, results under results_dir."""
        return {
            **os.environ,
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


def start_head(num_cpus: int = 2, env: dict[str, str] | None = None, timeout: float = 120) -> RayHead:
    """A head on free ports; a port taken between picking and binding costs one more attempt."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return _start_head(num_cpus, env, timeout)
        except RuntimeError:
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _start_head(num_cpus: int, env: dict[str, str] | None, timeout: float) -> RayHead:
    ports, low = pick_ports()
    temp_dir = tempfile.mkdtemp(prefix="rbt-", dir="/tmp")
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
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    head = RayHead(process, ports["dashboard-port"], ports["port"], temp_dir)
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
