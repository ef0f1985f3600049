"""Faults injected into real runs on a real local Ray: real kills, real stops, a real dead port.

Each run is compared with one uninterrupted run of the same corpus: the same documents, each
exactly once, with the same results. A slow (wide, random) model made by the tests keeps shards
in flight long enough to act mid-run; the job itself has no delay knob.
"""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from models import make_slow_model
from raycluster import free_port, invoke

from raybake.versions import ROOT

DOCS = 60
# About four documents per shard: fifteen shards or so, so a stop lands while most are still to do.
SPLIT = ("--split-bytes", "5000")


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    return make_slow_model(tmp_path_factory.mktemp("slow-model"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults") / "corpus"
    root.mkdir()
    lines = [json.dumps({"text": f"document {i}: " + "the quick brown fox " * (40 + i % 5)}) for i in range(DOCS)]
    (root / "docs.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def slow(slow_model):
    return (*SPLIT, "--model", slow_model)


@pytest.fixture(scope="module")
def baseline(ray_head, corpus, slow, tmp_path_factory):
    """The uninterrupted run: what every interrupted one must end up equal to."""
    out = tmp_path_factory.mktemp("baseline") / "out"
    done = subprocess.run(
        [sys.executable, "-m", "job", "--corpus", corpus, "--output", out, *slow],
        cwd=ROOT,
        env=ray_head.job_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return results(out)


def results(out):
    """source -> embedding, after checking that every document has exactly one row."""
    manifest = json.loads((out / "manifest.json").read_text())
    rows = pq.read_table(out / "parts", columns=["source", "error", "embedding"]).to_pylist()
    sources = [r["source"] for r in rows]
    assert len(sources) == len(set(sources)) == DOCS, "a document is missing or appears twice"
    assert all(r["error"] is None for r in rows)
    counts = manifest["counts"]
    assert counts["documents"] == counts["ok"] == DOCS and counts["missing"] == 0
    return {r["source"]: np.array(r["embedding"]) for r in rows}


def assert_same_results(got, want):
    assert got.keys() == want.keys()
    assert all(np.allclose(got[s], want[s], atol=1e-5) for s in want)


class Lines:
    """A running process's output, read in a thread so a test can wait for a line with a deadline."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.seen, self.queue = process, [], queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.queue.put(line)
        self.queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 240) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} in {timeout}s:\n{''.join(self.seen[-30:])}") from None
            if line is None:
                raise AssertionError(f"the process ended before {pattern!r}:\n{''.join(self.seen[-30:])}")
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match

    def rest(self, timeout: float = 300) -> str:
        self.process.wait(timeout=timeout)
        while (line := self.queue.get(timeout=30)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def spawn(argv, env) -> Lines:
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    return Lines(process)


def test_a_worker_killed_mid_shard_is_restarted_and_its_shards_retried(ray_head, corpus, slow, baseline, tmp_path):
    out = tmp_path / "out"
    job = spawn([sys.executable, "-m", "job", "--corpus", corpus, "--output", out, *slow], ray_head.job_env())
    pid = int(job.wait_for(r"worker on \S+ \(pid (\d+)\)").group(1))
    progress = job.wait_for(r"raybake-progress bytes=\d+/\d+ docs=\d+ shards=(\d+)/(\d+)")
    assert int(progress.group(1)) < int(progress.group(2)), "the job ended before the kill"
    os.kill(pid, signal.SIGKILL)
    log = job.rest()
    assert job.process.returncode == 0, log[-3000:]
    assert "A worker died or was killed while executing a task" in log  # Ray saw the kill land mid-shard
    assert_same_results(results(out), baseline)


def test_a_stopped_job_resumes_from_its_finished_shards_when_submitted_again(
    ray_head, corpus, slow, baseline, tmp_path
):
    env = ray_head.invoke_env(tmp_path / "results")
    submit = ("submit", "--corpus", str(corpus), "--job-args", " ".join(slow))
    first = invoke(env, *submit, "--detach")
    assert first.returncode == 0, first.stdout + first.stderr
    job_id, out = re.search(r"submitted (\S+); output (\S+)", first.stdout).groups()
    deadline = time.monotonic() + 240
    while not list((tmp_path / "results" / job_id / "parts").glob("part-*.parquet")):
        assert time.monotonic() < deadline, "no shard finished in 240s"
        time.sleep(0.2)
    assert invoke(env, "stop", "--job", job_id).returncode == 0
    stopped = invoke(env, "logs", "--job", job_id, "--follow")
    assert f"{job_id}: STOPPED" in stopped.stdout and stopped.returncode == 1

    again = invoke(env, *submit)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"submitted {job_id}-2;" in again.stdout
    resumed = int(re.search(r"resuming: (\d+) shard\(s\) already done", again.stdout).group(1))
    shards = json.loads((tmp_path / "results" / job_id / "manifest.json").read_text())["shards"]
    assert 1 <= resumed < shards["total"] and shards["resumed"] == resumed
    assert_same_results(results(tmp_path / "results" / job_id), baseline)
    assert out == str(tmp_path / "results" / job_id)
    # Asking about the job by its first id now means the attempt that carried on.
    status = invoke(env, "status", "--job", job_id)
    assert status.returncode == 0 and f"{job_id}-2: SUCCEEDED" in status.stdout
    assert f"{job_id} was submitted again as {job_id}-2" in status.stderr


def test_a_killed_client_leaves_the_job_running_and_the_same_submit_attaches(
    ray_head, corpus, slow, baseline, tmp_path
):
    env = ray_head.invoke_env(tmp_path / "results")
    submit = ("submit", "--corpus", str(corpus), "--name", "attach", "--job-args", " ".join(slow))
    client = spawn([sys.executable, "-m", "invoke", *submit], env)
    job_id = client.wait_for(r"submitted (\S+);").group(1)
    client.wait_for(r"documents:|raybake: starting")
    os.killpg(client.process.pid, signal.SIGKILL)
    client.process.wait(timeout=30)

    status = invoke(env, "status", "--job", job_id)
    assert re.search(rf"{job_id}: (PENDING|RUNNING)", status.stdout) and status.returncode == 1, status.stdout
    again = invoke(env, *submit)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # RUNNING as a rule; on a slow machine the job may have finished while this submit started.
    assert re.search(rf"attaching to {job_id} \((RUNNING|SUCCEEDED)\)", again.stdout), again.stdout
    assert "raybake: submitted" not in again.stdout
    assert f"job {job_id}: SUCCEEDED" in again.stdout
    assert invoke(env, "status", "--job", job_id).returncode == 0
    assert (
        f"raybake: done: {DOCS} ok, 0 error of {DOCS} documents read, 0 shard(s) missing"
        in invoke(env, "logs", "--job", job_id).stdout
    )
    listed = invoke(env, "jobs").stdout
    assert [line.split()[0] for line in listed.splitlines() if line.startswith("attach")] == [job_id]
    assert_same_results(results(tmp_path / "results" / job_id), baseline)


def test_two_submits_racing_make_one_job_and_new_makes_another(ray_head, tmp_path):
    (tmp_path / "one.txt").write_text("a single short document")
    env = ray_head.invoke_env(tmp_path / "results")
    submit = [sys.executable, "-m", "invoke", "submit", "--corpus", str(tmp_path / "one.txt"), "--name", "race"]
    racers = [spawn([*submit, "--detach"], env) for _ in range(2)]
    logs = [racer.rest() for racer in racers]
    assert [r.process.returncode for r in racers] == [0, 0], logs
    ids = {re.search(r"(?:submitted|attaching to) ([\w-]+)", log).group(1) for log in logs}
    assert len(ids) == 1 and sum("raybake: submitted" in log for log in logs) == 1, logs
    assert invoke(env, "logs", "--job", ids.pop(), "--follow").returncode == 0
    again = invoke(env, *submit[3:], "--new")  # a new attempt on purpose: same output, nothing left to do
    assert again.returncode == 0 and "submitted race-2;" in again.stdout, again.stdout + again.stderr
    assert "resuming: 1 shard(s) already done, 0 to go" in again.stdout


@pytest.mark.parametrize(
    ("flags", "extra_env", "message"),
    [
        (("--address", "http://127.0.0.1:{closed}"), {}, r"cannot reach the Ray cluster at 'http://127\.0\.0\.1:\d+'"),
        # The local backend sends a token from raybake's token file alone, never $RAY_AUTH_TOKEN.
        ((), {"INVOKE_RAYBAKE_TOKEN_FILE": "{wrong_token}"}, r"the Ray cluster at '[^']+' refused the token"),
    ],
    ids=["unreachable", "wrong-token"],
)
def test_a_cluster_that_cannot_be_used_fails_in_one_line_and_writes_nothing(
    ray_head, corpus, tmp_path, flags, extra_env, message
):
    flags = [f.format(closed=free_port()) for f in flags]
    (tmp_path / "wrong-token").write_text("wrong-token")
    extra_env = {k: v.format(wrong_token=tmp_path / "wrong-token") for k, v in extra_env.items()}
    jobs_before = invoke(ray_head.invoke_env(tmp_path), "jobs").stdout
    env = ray_head.invoke_env(tmp_path / "results", **extra_env)
    done = invoke(env, "submit", "--corpus", str(corpus), *flags, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert re.fullmatch(rf"raybake: {message}[^\n]*\n", done.stderr), done.stderr
    assert not (tmp_path / "results").exists()
    assert invoke(ray_head.invoke_env(tmp_path), "jobs").stdout == jobs_before


def flaky_env(ray_head, tmp_path) -> tuple[dict[str, str], str]:
    """The job's environment, and the marker file whose existence says the fault was injected:
    tests/flakyfs.py's `flaky://` filesystem, found by fsspec through an entry point."""
    site = tmp_path / "flaky-site"
    (site / "flakyfs-0.dist-info").mkdir(parents=True)
    (site / "flakyfs-0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: flakyfs\nVersion: 0\n")
    (site / "flakyfs-0.dist-info" / "entry_points.txt").write_text("[fsspec.specs]\nflaky = flakyfs:FlakyFileSystem\n")
    marker = str(tmp_path / "fault-injected")
    env_vars = {"PYTHONPATH": f"{site}:{ROOT / 'tests'}:{ROOT}", "FLAKY_MARKER": marker}
    job_config = {"runtime_env": {"env_vars": env_vars}}
    return {**ray_head.job_env(), **env_vars, "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(job_config)}, marker


def test_a_shard_whose_stream_times_out_is_retried_and_a_damaged_part_or_changed_model_is_caught_on_rerun(
    ray_head, corpus, slow_model, baseline, tmp_path
):
    model = tmp_path / "model"
    shutil.copytree(slow_model, model)
    env, marker = flaky_env(ray_head, tmp_path)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "job", "--corpus", f"flaky://{corpus}", "--output", out, *SPLIT, "--model", model]

    def job() -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    first = job()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert os.path.exists(marker), "no fault was injected"
    assert re.search(r"failed, retrying in 1s: TimeoutError: read timed out \(injected\)", first.stdout), first.stdout
    assert_same_results(results(out), baseline)  # every document once, no `file unreadable` row

    # A finished part left empty (a node crash before its data reached the disk) is redone.
    parts = sorted((out / "parts").glob("part-*.parquet"))
    parts[1].write_bytes(b"")
    again = job()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"finished part {parts[1].name} cannot be read" in again.stdout
    assert f"resuming: {len(parts) - 1} shard(s) already done, 1 to go" in again.stdout
    assert_same_results(results(out), baseline)

    # The same --output after the model's weights changed in place: refused, naming what changed.
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())
    changed = job()
    assert changed.returncode == 2, changed.stdout[-3000:] + changed.stderr[-3000:]
    assert f"error: {str(out)!r} holds results of a different job (changed: model_files)" in changed.stdout
