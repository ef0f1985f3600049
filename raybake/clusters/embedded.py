"""The embedded local Ray: a head on loopback that raybake starts on demand, reuses, and stops.

The head runs as `ray start --head --block` in a session of its own, so it outlives one
`invoke submit` (the next submit reuses it, no start cost) and `invoke down` ends exactly it:
its process group, never a global `ray stop`, which would also end the user's other clusters.

Its auth is decided here, not inherited: token auth with a token raybake generates at each
start, in a file of its own (mode 0600, beside the state file), given to `ray start` by
RAY_AUTH_TOKEN_PATH. Whether ~/.ray/auth_token exists, or RAY_AUTH_TOKEN is set for a
production cluster, changes nothing: the head gets an environment that names neither.

It listens on loopback only (`--node-ip-address`, `--dashboard-host`), on ports it chose: the
dashboard and GCS ports of the settings, free ports for every other service (Ray's defaults,
such as the dashboard agent's 52365, would collide with any other Ray on the machine, and the
job API fails with "No available agent").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from raybake import console, state
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.private import write_private

HOST = "127.0.0.1"
START_TIMEOUT_S = 90
START_ATTEMPTS = 2
STOP_TIMEOUT_S = 60
# Every port a head binds besides its dashboard and GCS ports (`ray start --<name>=PORT`).
SERVICE_PORTS = (
    "ray-client-server-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "node-manager-port",
    "object-manager-port",
)
WORKER_PORTS = 200

# What the head (and so every job on it) gets of the client's environment. An allow-list: the
# head outlives the shell that started it and its jobs see its environment, and a deny-list
# passes whatever secret nobody listed (a company's API key, a database URL with its password);
# an allow-list can only miss a setting, which shows as a job that fails, not as a leak.
# No object store's variables: the credentials of a job's own URIs go to that job alone
# (raybake/clusters/local.py), and Hugging Face's token is its file under HOME.
KEPT_NAMES = frozenset(
    {
        *("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"),
        *("VIRTUAL_ENV", "PYTHONPATH", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS"),
        *("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"),
        *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"),
    }
)
# Ray turns `--node-ip-address=127.0.0.1` into the machine's own address unless it is told the
# cluster is this machine alone (its switch for laptops); only a node whose address is loopback
# binds its GCS, raylet and agents to loopback instead of every interface.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
KEPT_PREFIXES = ("LC_", "XDG_", "HF_", "TRANSFORMERS_", "TORCH_", "NVIDIA_", "RAY_")
# Under a kept prefix, a name that says it holds a secret or an address stays behind all the same
# (HF_TOKEN, RAY_AUTH_TOKEN, RAY_AUTH_MODE, RAY_ADDRESS).
WITHHELD_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH", "ADDRESS")


@dataclass(frozen=True)
class Head:
    """A head raybake started: the `ray start --block` process (its group's leader) and its files."""

    pid: int
    temp_dir: str
    token_file: str
    dashboard_port: int
    gcs_port: int
    agent_port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.dashboard_port}"

    def token(self) -> str:
        return Path(self.token_file).read_text().strip()


def url(settings: Settings) -> str:
    return f"http://{HOST}:{settings.local_dashboard_port}"


def answers(address: str, *, headers: Mapping[str, str] | None = None, path: str = "/api/version") -> bool:
    """Whether an HTTP server answers there; any HTTP status counts (401: up, with token auth)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{address}{path}", headers=dict(headers or {})), timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def is_running(settings: Settings) -> bool:
    return answers(url(settings))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pick_ports(names: tuple[str, ...], *, taken: tuple[int, ...] = ()) -> tuple[dict[str, int], int]:
    """Free ports for the named services, and the low end of a worker port range clear of them all."""
    low = free_port()
    while any(low <= port <= low + WORKER_PORTS for port in taken):
        low = free_port()
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        port = free_port()
        if not low <= port <= low + WORKER_PORTS and port not in (*ports.values(), *taken):
            ports[names[len(ports)]] = port
    return ports, low


def head_environ(environ: Mapping[str, str], *, token_file: Path) -> dict[str, str]:
    """The environment of `ray start`: the kept part of the client's, this head's auth, and a PATH
    whose `python` is the client's interpreter (a user's `--entrypoint "python ..."` runs on it)."""
    kept = {
        name: value
        for name, value in environ.items()
        if name in KEPT_NAMES
        or (name.startswith(KEPT_PREFIXES) and not any(word in name.upper() for word in WITHHELD_WORDS))
    }
    interpreter_bin = str(Path(sys.executable).parent)
    kept["PATH"] = os.pathsep.join([interpreter_bin, *(p for p in kept.get("PATH", "").split(os.pathsep) if p)])
    return {**kept, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file), **LOOPBACK}


def _command_line(pid: int) -> str:
    if Path("/proc/self/cmdline").exists():
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""
    return subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True).stdout


def alive(head: Head) -> bool:
    """The head's process still runs, and is that head (a reused pid runs something else)."""
    return head.temp_dir in _command_line(head.pid)


def heads(settings: Settings) -> dict[str, Head]:
    """The heads raybake started from this checkout, by dashboard port, as the state file has them."""
    return {port: Head(**entry) for port, entry in state.local_heads(settings).items()}


def ours(settings: Settings) -> Head | None:
    """The head raybake started on the configured dashboard port, if it still runs."""
    head = heads(settings).get(str(settings.local_dashboard_port))
    if head is None:
        return None
    if not alive(head):
        _forget(settings, head)
        return None
    return head


@contextlib.contextmanager
def _lock(settings: Settings) -> Iterator[None]:
    """One start at a time per checkout: two submits racing would both start a head on one port."""
    path = state.path_of(settings).with_name("local-ray.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_running(settings: Settings) -> Head | None:
    """The head raybake started on the local dashboard port, started now if nothing answers there.

    None when another Ray (a user's own `ray start`, a test's head) already answers on that port:
    it is used as it is, with the token the user gives (the address backend's rules).
    """
    with _lock(settings):
        head = ours(settings)
        if head is None and is_running(settings):
            return None
        if head is not None:
            _wait_ready(head)
            return head
        # A port picked free can be taken before Ray binds it, and Ray gives its raylet 30 s to
        # register on a loaded machine: a start that died costs one more attempt, not the submit.
        for attempt in range(1, START_ATTEMPTS + 1):
            head = _start(settings)
            try:
                _wait_ready(head)
                return head
            except RaybakeError:
                # What the dead start left in its group (a GCS still on its port) goes too.
                _end(head)
                if attempt == START_ATTEMPTS:
                    raise
                _forget(settings, head)
        raise AssertionError("unreachable")


def _start(settings: Settings) -> Head:
    dashboard, gcs = settings.local_dashboard_port, settings.local_ray_port
    ports, low = pick_ports(SERVICE_PORTS, taken=(dashboard, gcs))
    # Under /tmp, not the project: Ray's socket paths inside it must fit in 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="raybake-ray-", dir="/tmp")
    token_file = state.path_of(settings).with_name(f"local-ray-{dashboard}.token")
    write_private(token_file, secrets.token_hex(32))
    command = [
        sys.executable,  # the client's interpreter: the head, its workers and its jobs run on it
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        f"--temp-dir={temp_dir}",
        # Every service of the node on loopback: without it the GCS, raylet, object manager,
        # metrics and agent ports bind every interface.
        f"--node-ip-address={HOST}",
        f"--dashboard-host={HOST}",
        f"--dashboard-port={dashboard}",
        f"--port={gcs}",
        f"--min-worker-port={low}",
        f"--max-worker-port={low + WORKER_PORTS}",
        *(f"--{name}={port}" for name, port in ports.items()),
        "--disable-usage-stats",
    ]
    if settings.local_num_cpus:
        command.append(f"--num-cpus={settings.local_num_cpus}")
    console.say(f"starting a local Ray (dashboard {url(settings)}, logs {temp_dir})")
    with Path(temp_dir, "start.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=head_environ(os.environ, token_file=token_file),
            start_new_session=True,
        )
    head = Head(process.pid, temp_dir, str(token_file), dashboard, gcs, ports["dashboard-agent-listen-port"])
    state.record_local_head(settings, str(dashboard), asdict(head))
    return head


def _wait_ready(head: Head) -> None:
    """Until the job API takes jobs: the dashboard answers and so does the head's job agent."""
    auth = {"Authorization": f"Bearer {head.token()}"}
    agent = f"http://{HOST}:{head.agent_port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (answers(head.url) and answers(agent, headers=auth, path="/api/local_raylet_healthz")):
        if not alive(head):
            tail = Path(head.temp_dir, "start.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RaybakeError("could not start the local Ray: " + " | ".join(tail), ExitCode.UNREACHABLE)
        if time.monotonic() > deadline:
            # Half started is not reused: ended here; its log stays until the next submit or down.
            _end(head)
            raise RaybakeError(
                f"the local Ray did not take jobs within {START_TIMEOUT_S}s; see {head.temp_dir}/start.log",
                ExitCode.UNREACHABLE,
            )
        time.sleep(0.5)


def stop(settings: Settings) -> list[Head]:
    """Stop the heads raybake started from this checkout (and only those); the ones that ran."""
    stopped = []
    for head in heads(settings).values():
        if alive(head):
            _end(head)
            stopped.append(head)
        _forget(settings, head)
    return stopped


def _end(head: Head) -> None:
    """`ray start --block` stops its own processes on SIGTERM; what outlives it in its group is killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(head.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while alive(head) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(head.pid, signal.SIGKILL)


def _forget(settings: Settings, head: Head) -> None:
    shutil.rmtree(head.temp_dir, ignore_errors=True)
    Path(head.token_file).unlink(missing_ok=True)
    state.record_local_head(settings, str(head.dashboard_port), None)
