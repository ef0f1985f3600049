"""The embedded local Ray as a new user meets it: started by `invoke submit`, stopped by `invoke down`.

Run the way the README's users run it, and in the places that used to break it:
- `.venv/bin/invoke` by its path, with no venv on PATH (a cron line, an IDE's run button);
- RAY_AUTH_TOKEN of a production cluster in the environment, and a ~/.ray/auth_token in HOME;
- a user's own plain `ray start --head` already running on the machine, on Ray's default
  dashboard agent port where that is free.
The module's heads: the user's (tests/raycluster.py) and the one the first submit starts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from raycluster import clean_environ, free_port, listening, start_users_head

from raybake.clusters.embedded import SERVICE_PORTS, answers
from raybake.versions import ROOT

INVOKE = Path(sys.executable).parent / "invoke"
PRODUCTION_TOKEN = "production-token-of-another-cluster"
HOME_TOKEN = "token-in-the-users-home"


@pytest.fixture(scope="module")
def users_head():
    head = start_users_head()
    yield head
    head.stop()


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """Two HOMEs (one with ~/.ray/auth_token, one without), a state file and results of the module's own."""
    root = tmp_path_factory.mktemp("embedded")
    (root / "home-with-token" / ".ray").mkdir(parents=True)
    (root / "home-with-token" / ".ray" / "auth_token").write_text(HOME_TOKEN)
    (root / "home-without").mkdir()
    return {
        "root": root,
        "ports": {
            "INVOKE_RAYBAKE_LOCAL_DASHBOARD_PORT": str(free_port()),
            "INVOKE_RAYBAKE_LOCAL_RAY_PORT": str(free_port()),
        },
    }


def env_for(machine, home: str, **extra: str) -> dict[str, str]:
    """A user's shell: no venv on PATH, the given HOME, the module's ports, state and results."""
    root = machine["root"]
    return {
        **{k: v for k, v in clean_environ().items() if k not in ("VIRTUAL_ENV", "PATH")},
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(root / home),
        **machine["ports"],
        "INVOKE_RAYBAKE_STATE_FILE": str(root / "state" / "state.json"),
        "INVOKE_RAYBAKE_RESULTS_DIR": str(root / "results"),
        **extra,
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`.venv/bin/invoke ...` by its path, as a cron line runs it."""
    return subprocess.run([str(INVOKE), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def local_head(machine) -> dict:
    heads = json.loads((machine["root"] / "state" / "state.json").read_text()).get("local_ray", {})
    return heads[machine["ports"]["INVOKE_RAYBAKE_LOCAL_DASHBOARD_PORT"]]


def running(pid: int) -> bool:
    """A live process, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def worker_pids(log: str) -> set[int]:
    return {int(pid) for pid in re.findall(r"worker on \S+ \(pid (\d+)\)", log)}


def loopback(ip: str) -> bool:
    """127.0.0.1, also as an IPv6 socket's IPv4-mapped address (::ffff:127.0.0.1); never :: or 0.0.0.0."""
    address = ipaddress.ip_address(ip)
    return str(getattr(address, "ipv4_mapped", None) or address) == "127.0.0.1"


def http_status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.fixture(scope="module")
def first_submit(users_head, machine):
    """The submit that starts the embedded Ray, from a shell that holds a production token."""
    env = env_for(machine, "home-with-token", RAY_AUTH_TOKEN=PRODUCTION_TOKEN)
    done = run(env, "submit", "--corpus", "examples/corpus")
    yield done
    run(env_for(machine, "home-without"), "down")
    state = machine["root"] / "state" / "state.json"
    for head in json.loads(state.read_text()).get("local_ray", {}).values() if state.exists() else ():
        # `down` failed: what it should have stopped must not outlive the tests.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head["pid"], signal.SIGKILL)
        shutil.rmtree(head["temp_dir"], ignore_errors=True)


def test_a_submit_beside_a_users_ray_with_a_production_token_in_the_environment(first_submit, machine):
    assert first_submit.returncode == 0, first_submit.stdout[-3000:] + first_submit.stderr[-3000:]
    assert "documents: 41 (41 ok, 0 error, 0 missing, 0 truncated)" in first_submit.stdout
    assert PRODUCTION_TOKEN not in first_submit.stdout + first_submit.stderr


def test_the_local_ray_has_a_token_of_its_own_and_binds_only_ports_it_chose(first_submit, machine, users_head):
    head = local_head(machine)
    token_file = Path(head["token_file"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32 and token not in (PRODUCTION_TOKEN, HOME_TOKEN)
    jobs = f"http://127.0.0.1:{head['dashboard_port']}/api/jobs/"
    assert http_status(jobs, token) == 200
    assert http_status(jobs, PRODUCTION_TOKEN) in (401, 403)
    assert http_status(jobs, HOME_TOKEN) in (401, 403)
    command = Path(f"/proc/{head['pid']}/cmdline").read_bytes().decode().split("\0")
    assert {arg.split("=")[0].removeprefix("--") for arg in command if arg.startswith("--")} >= set(SERVICE_PORTS)
    assert "--dashboard-agent-listen-port=52365" not in command
    # Loopback means loopback: every socket the head's processes listen on (GCS, raylet, object
    # manager, metrics, agents, dashboard, workers) is bound to 127.0.0.1, none to all interfaces.
    bound = listening(head["pid"])
    assert bound and all(loopback(ip) for ip, _ in bound), sorted(bound)
    assert head["dashboard_port"] in {port for _, port in bound}
    # The job ran on the interpreter that started the head, not on a `python` from PATH.
    entrypoint = run(env_for(machine, "home-without"), "jobs").stdout.split(maxsplit=2)[2]
    assert Path(entrypoint.split()[0]).parent == Path(sys.executable).parent
    assert answers(users_head.url)


@pytest.mark.parametrize("home", ["home-with-token", "home-without"])
def test_every_task_behaves_the_same_with_or_without_a_token_in_home(first_submit, machine, home):
    job_id = re.search(r"submitted (\S+);", first_submit.stdout).group(1)
    env = env_for(machine, home)
    again = run(env, "submit", "--corpus", "examples/corpus")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"attaching to {job_id} (SUCCEEDED)" in again.stdout
    status = run(env, "status", "--job", job_id)
    assert (status.returncode, status.stdout) == (0, f"{job_id}: SUCCEEDED (Job finished successfully.)\n")
    logs = run(env, "logs", "--job", job_id)
    assert logs.returncode == 0 and "raybake: done: 41 ok" in logs.stdout
    listed = run(env, "jobs")
    assert listed.returncode == 0 and listed.stdout.split()[:2] == [job_id, "SUCCEEDED"]
    stop = run(env, "stop", "--job", job_id)
    assert (stop.returncode, stop.stdout) == (0, f"raybake: nothing to stop: {job_id}\n"), stop.stderr


def test_a_finished_job_whose_output_was_deleted_runs_again(first_submit, machine):
    job_id = re.search(r"submitted (\S+);", first_submit.stdout).group(1)
    shutil.rmtree(machine["root"] / "results" / job_id)
    again = run(env_for(machine, "home-without"), "submit", "--corpus", "examples/corpus")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"{job_id} SUCCEEDED, but its output" in again.stdout and "holds no manifest.json" in again.stdout
    assert f"submitted {job_id}-2;" in again.stdout
    assert (machine["root"] / "results" / job_id / "manifest.json").is_file()
    # The first submit's worker waited, model loaded, for this one (local_keep_warm_s).
    assert worker_pids(again.stdout) <= worker_pids(first_submit.stdout) and "model warm (loaded" in again.stdout


def test_down_stops_only_the_local_ray_raybake_started(first_submit, machine, users_head):
    head = local_head(machine)
    env = env_for(machine, "home-with-token")
    down = run(env, "down")
    assert down.returncode == 0, down.stderr
    assert f"raybake: local Ray stopped (dashboard http://127.0.0.1:{head['dashboard_port']})" in down.stdout
    assert not answers(f"http://127.0.0.1:{head['dashboard_port']}")
    assert not Path(head["temp_dir"]).exists() and not Path(head["token_file"]).exists()
    # The warm workers end with their Ray (a worker exits on its own once its raylet is gone).
    deadline = time.monotonic() + 60
    while (left := [pid for pid in worker_pids(first_submit.stdout) if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"warm workers outlived invoke down: {left}"
    assert answers(users_head.url) and users_head.process.poll() is None
    assert "no local Ray of raybake's was running" in run(env, "down").stdout
