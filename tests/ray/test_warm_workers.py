"""Warm workers (`--keep-warm-seconds`, set by the embedded local Ray): on a real local Ray, a later
job of the same model runs on the worker the first one loaded; another model's job, or time,
ends them; a stopped job leaves no shard running on them.

The head is the session's (two CPUs): each test leaves no warm worker behind for the others.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from models import MINILM, make_slow_model, make_tiny_model

from raybake.versions import ROOT

KEEP = ("--keep-warm-seconds", "300")
WORKER = re.compile(r"worker on \S+ \(pid (\d+)\): [^,]+, (model warm|model loaded)")
# The state of the Ray's shard tasks, read by a driver of its own through Ray's state API.
SHARD_TASKS = """
import json, ray
from ray.util.state import list_tasks
ray.init(logging_level="ERROR")
tasks = list_tasks(filters=[("name", "=", "PoolWorker.process")], detail=True, limit=10000)
print(json.dumps([{"job": t.job_id, "state": str(t.state), "error_type": str(t.error_type)} for t in tasks]))
"""
RETIRE_ALL = """
import ray
from job.pool import retire_other_pools
ray.init(logging_level="ERROR")
retire_other_pools(keep=None)
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm") / "corpus"
    root.mkdir()
    lines = [json.dumps({"text": f"document {i}: " + "the quick brown fox " * (40 + i % 5)}) for i in range(60)]
    (root / "docs.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(autouse=True)
def no_warm_worker_left(ray_head):
    yield
    python(ray_head, "-c", RETIRE_ALL)


def python(ray_head, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, *map(str, args)]
    done = subprocess.run(argv, cwd=ROOT, env=ray_head.job_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def shard_tasks(ray_head) -> list[dict[str, str]]:
    return json.loads(python(ray_head, "-c", SHARD_TASKS).stdout.strip().splitlines()[-1])


def job(ray_head, corpus, out, *args) -> list[tuple[int, str]]:
    """Run the job to its end; its workers as (pid, 'model warm' or 'model loaded')."""
    done = python(ray_head, "-m", "job", "--corpus", corpus, "--output", out, *args)
    return [(int(pid), how) for pid, how in WORKER.findall(done.stdout)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone_within(pids, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(map(alive, pids)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def embeddings(out) -> dict[str, np.ndarray]:
    rows = pq.read_table(out / "parts", columns=["source", "embedding"]).to_pylist()
    return {r["source"]: np.array(r["embedding"]) for r in rows}


def test_a_second_job_of_the_same_model_runs_on_the_warm_worker_with_the_same_results(ray_head, corpus, tmp_path):
    first = job(ray_head, corpus, tmp_path / "first", "--model", MINILM, *KEEP)
    second = job(ray_head, corpus, tmp_path / "second", "--model", MINILM, *KEEP)
    assert {how for _, how in first} == {"model loaded"}
    assert {how for _, how in second} == {"model warm"} and {p for p, _ in second} <= {p for p, _ in first}
    manifest = json.loads((tmp_path / "second" / "manifest.json").read_text())
    assert all(w["warm"] for w in manifest["workers"]) and manifest["versions"]["torch"]
    got, want = embeddings(tmp_path / "second"), embeddings(tmp_path / "first")
    assert got.keys() == want.keys() and len(got) == 60
    assert all(np.allclose(got[s], want[s], atol=1e-6) for s in want)


def test_a_job_of_another_model_ends_the_idle_warm_workers_it_needs_the_cpus_of(ray_head, corpus, tmp_path):
    warm = job(ray_head, corpus, tmp_path / "warm", "--model", MINILM, *KEEP)
    other = make_tiny_model("classify", tmp_path / "classify-model")
    # Two warm workers hold both of the head's CPUs: without them ended, this job could not start.
    job(ray_head, corpus, tmp_path / "other", "--task", "classify", "--model", other)
    assert gone_within([pid for pid, _ in warm], 30)


def test_an_idle_warm_worker_ends_itself_after_its_time(ray_head, corpus, tmp_path):
    workers = job(ray_head, corpus, tmp_path / "out", "--model", MINILM, "--keep-warm-seconds", "2")
    assert workers
    assert gone_within([pid for pid, _ in workers], 60)


def test_a_stopped_job_leaves_no_shard_running_on_its_warm_workers(ray_head, corpus, tmp_path):
    slow = make_slow_model(tmp_path / "slow-model")
    earlier_jobs = {s["job"] for s in shard_tasks(ray_head)}  # the session's head ran other tests' jobs
    argv = [sys.executable, "-m", "job", "--corpus", corpus, "--output", tmp_path / "out", "--model", slow]
    argv += ["--split-bytes", "5000", *KEEP]
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    driver = subprocess.Popen(list(map(str, argv)), cwd=ROOT, env=ray_head.job_env(), **output)
    seen = []
    for line in driver.stdout:
        seen.append(line)
        if re.search(r"raybake-progress .* shards=[1-9]\d*/", line):
            break
    else:
        pytest.fail("the job ended before a shard was done:\n" + "".join(seen[-30:]))
    pids = [int(pid) for pid, _ in WORKER.findall("".join(seen))]
    driver.send_signal(signal.SIGTERM)  # what `ray job stop` sends
    driver.communicate(timeout=60)

    # Every shard task of the stopped job ends soon: none keeps a warm worker busy behind it.
    deadline, states = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        states = [s for s in shard_tasks(ray_head) if s["job"] not in earlier_jobs]
        if not any(s["state"].endswith(("RUNNING", "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY")) for s in states):
            break
        time.sleep(1)
    assert not any(s["state"].endswith("RUNNING") for s in states), states
    assert any(s["error_type"].endswith("TASK_CANCELLED") for s in states), states
    assert all(map(alive, pids))  # still warm: the next job uses them

    again = job(ray_head, corpus, tmp_path / "out", "--model", slow, "--split-bytes", "5000", *KEEP)
    assert {how for _, how in again} == {"model warm"}
    assert len(embeddings(tmp_path / "out")) == 60


def test_two_jobs_of_different_models_started_together_both_succeed(ray_head, corpus, tmp_path):
    """Each job claims its warm workers before it plans: the other job's start retires only idle
    workers no job holds, and waits for the CPUs until the first job is done with them."""
    other = make_tiny_model("classify", tmp_path / "classify-model")
    argvs = [
        ["--model", MINILM, "--output", tmp_path / "embed"],
        ["--task", "classify", "--model", other, "--output", tmp_path / "classify"],
    ]
    jobs = [
        subprocess.Popen(
            list(map(str, [sys.executable, "-m", "job", "--corpus", corpus, *argv, *KEEP])),
            cwd=ROOT,
            env=ray_head.job_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for argv in argvs
    ]
    logs = [job.communicate(timeout=600)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], [log[-3000:] for log in logs]
    for out in ("embed", "classify"):
        manifest = json.loads((tmp_path / out / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["counts"]["ok"] == 60
