"""The embedded local Ray: a head on loopback that raybake starts on demand and reuses.

`ray start --head` daemonizes, so the cluster outlives one `invoke submit`: the next submit
reuses it (no start cost), and `invoke down` stops it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from raybake import console, poll
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError

HOST = "127.0.0.1"
TOKEN_FILE = Path("~/.ray/auth_token").expanduser()
START_TIMEOUT_S = 90


def url(settings: Settings) -> str:
    return f"http://{HOST}:{settings.local_dashboard_port}"


def is_running(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(f"{url(settings)}/api/version", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered: up, with token auth
    except OSError:
        return False


def ray_cli() -> str:
    found = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    if not Path(found).exists():
        raise RaybakeError(
            "the `ray` command is missing; install the requirements: pip install -r requirements-dev.txt",
            ExitCode.REFUSED,
        )
    return found


def ensure_running(settings: Settings) -> str:
    """The dashboard URL of the local Ray, starting a head first if none answers."""
    if is_running(settings):
        return url(settings)
    command = [
        ray_cli(),
        "start",
        "--head",
        "--dashboard-host",
        HOST,
        "--dashboard-port",
        str(settings.local_dashboard_port),
        "--port",
        str(settings.local_ray_port),
        "--disable-usage-stats",
    ]
    if settings.local_num_cpus:
        command += ["--num-cpus", str(settings.local_num_cpus)]
    console.say(f"starting a local Ray (dashboard {url(settings)})")
    started = subprocess.run(command, capture_output=True, text=True)
    if started.returncode != 0:
        tail = (started.stderr or started.stdout).strip().splitlines()[-3:]
        raise RaybakeError("could not start the local Ray: " + " | ".join(tail), ExitCode.UNREACHABLE)
    poll.until(
        lambda: is_running(settings),
        every_s=0.5,
        within_s=START_TIMEOUT_S,
        gave_up=lambda: RaybakeError(
            f"the local Ray started but its dashboard did not answer within "
            f"{START_TIMEOUT_S}s; see /tmp/ray/session_latest/logs",
            ExitCode.UNREACHABLE,
        ),
    )
    return url(settings)


def stop() -> bool:
    """Stop every Ray process this machine runs for the local cluster. True if any was running."""
    result = subprocess.run([ray_cli(), "stop"], capture_output=True, text=True)
    return "Stopped" in result.stdout + result.stderr
