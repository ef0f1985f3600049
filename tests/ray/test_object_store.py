"""s3:// end to end on a real Ray: corpus and results on a real S3 API (moto's server on loopback).

The Ray head holds the credentials in its environment, as a pod holds them from its Secret
(envFrom); raybake passes only where the store is (endpoint, path-style addressing). The client
lists the corpus with its own credentials, for the job id.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import s3server
from models import make_slow_model
from raycluster import invoke, start_head

from raybake.versions import ROOT

SLOW_DOCS = 60
# About fifteen shards of a few documents each, so that a stop lands while most are still to do.
SLOW_SPLIT = "--split-bytes 5000"


@pytest.fixture(scope="module")
def s3():
    server = s3server.start()
    fs = server.fs()
    for bucket in ("corpus", "results"):
        fs.mkdir(bucket)
    assert s3server.put_mixed_corpus(server, "corpus/mixed") == 80
    slow = [json.dumps({"text": f"document {i}: " + "the quick brown fox " * (40 + i % 5)}) for i in range(SLOW_DOCS)]
    fs.pipe("corpus/slow/docs.jsonl", ("\n".join(slow) + "\n").encode())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def head(s3):
    """A head whose environment holds the credentials: what every job's driver and workers inherit."""
    started = start_head(num_cpus=2, auth_mode="token", env=s3.credentials())
    yield started
    started.stop()


def env_for(head, s3, results: str, **extra: str) -> dict[str, str]:
    store = {"INVOKE_RAYBAKE_S3_ENDPOINT": s3.endpoint, "INVOKE_RAYBAKE_S3_PATH_STYLE": "true"}
    # A URI as the results root: every default output lands on s3:// too.
    return head.invoke_env(results, **{**store, **s3.credentials(), **extra})  # type: ignore[arg-type]


def manifest_of(s3, output: str) -> dict:
    return json.loads(s3.fs().cat(f"{output}/manifest.json"))


def rows_of(s3, output: str) -> list[dict]:
    fs = s3.fs()
    parts = sorted(fs.find(f"{output}/parts"))
    assert parts and all(p.endswith(".parquet") for p in parts), parts
    rows = []
    for part in parts:
        with fs.open(part, "rb") as handle:
            rows += pq.read_table(handle, columns=["source", "error"]).to_pylist()
    return rows


def submitted(done: subprocess.CompletedProcess) -> tuple[str, str]:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return re.search(r"submitted (\S+); output (\S+)", done.stdout).groups()


def test_jsonl_and_parquet_from_s3_to_s3_succeed_and_the_manifest_reconciles(head, s3):
    env = env_for(head, s3, "s3://results/mixed")
    done = invoke(env, "submit", "--corpus", "s3://corpus/mixed", "--job-args", "--split-bytes 2048")
    job_id, output = submitted(done)
    assert output == f"s3://results/mixed/{job_id}"
    assert f"job {job_id}: SUCCEEDED" in done.stdout
    manifest = manifest_of(s3, output)
    assert manifest["counts"] == {
        "documents": 80,
        "ok": 80,
        "error": 0,
        "missing": 0,
        "truncated": 0,
        "duplicate_ids": 0,
    }
    rows = rows_of(s3, output)
    assert len(rows) == len({r["source"] for r in rows}) == sum(p["rows"] for p in manifest["parts"]) == 80
    assert {re.split(r"[:@]", r["source"])[0] for r in rows} == {"articles.jsonl", "articles.parquet"}
    # Nothing of the credentials in what raybake printed or the job wrote.
    secret = s3.credentials()["AWS_SECRET_ACCESS_KEY"]
    assert secret not in done.stdout + done.stderr + json.dumps(manifest)
    # The same submit again attaches to the job that ran.
    again = invoke(env, "submit", "--corpus", "s3://corpus/mixed", "--job-args", "--split-bytes 2048")
    assert f"attaching to {job_id} (SUCCEEDED)" in again.stdout and again.returncode == 0


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    return make_slow_model(tmp_path_factory.mktemp("slow-model"))


def test_a_stopped_job_on_s3_resumes_when_submitted_again(head, s3, slow_model):
    env = env_for(head, s3, "s3://results/stop")
    # A model slow enough (built by the tests) that shards are still in flight when the stop lands.
    submit = ("submit", "--corpus", "s3://corpus/slow", "--model", slow_model, "--job-args", SLOW_SPLIT)
    job_id, output = submitted(invoke(env, *submit, "--detach"))
    fs, deadline = s3.fs(), time.monotonic() + 240
    while not (fs.exists(f"{output}/parts") and fs.find(f"{output}/parts")):
        assert time.monotonic() < deadline, "no shard finished in 240s"
        time.sleep(0.5)
        fs.invalidate_cache()
    assert invoke(env, "stop", "--job", job_id).returncode == 0
    stopped = invoke(env, "logs", "--job", job_id, "--follow")
    assert f"{job_id}: STOPPED" in stopped.stdout

    again = invoke(env, *submit)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"submitted {job_id}-2;" in again.stdout
    resumed = int(re.search(r"resuming: (\d+) shard\(s\) already done", again.stdout).group(1))
    manifest = manifest_of(s3, output)
    assert 1 <= resumed < manifest["shards"]["total"]
    assert manifest["shards"]["resumed"] == resumed
    assert manifest["counts"]["ok"] == manifest["counts"]["documents"] == SLOW_DOCS
    assert len({r["source"] for r in rows_of(s3, output)}) == SLOW_DOCS


def test_the_clients_wrong_credentials_are_a_note_where_the_cluster_holds_its_own(head, s3):
    """The head here holds the right ones, as an existing cluster's nodes do: the client's never
    go to it, so the client only notes it could not list the corpus, and the job succeeds."""
    env = env_for(head, s3, "s3://results/wrong", AWS_SECRET_ACCESS_KEY="not-the-secret")
    done = invoke(env, "submit", "--corpus", "s3://corpus/mixed")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "note: cannot list --corpus from here" in done.stderr
    assert "not-the-secret" not in done.stdout + done.stderr
    # The job refuses wrong ones on its own, before any worker: one line last, exit 3.
    checked = subprocess.run(
        [sys.executable, "-m", "job", "--check", "--corpus", "s3://corpus/mixed"],
        cwd=ROOT,
        env={**env, "AWS_ENDPOINT_URL_S3": s3.endpoint},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 3, checked.stdout + checked.stderr
    line = checked.stdout.strip().splitlines()[-1]
    assert line.startswith("raybake: error: the object store refused the credentials (403"), line
    assert "Traceback" in checked.stdout  # the log keeps it, marked; a summary shows only the line


def test_a_changed_corpus_file_runs_anew_into_a_new_output_and_says_why(head, s3):
    env = env_for(head, s3, "s3://results/change")
    fs = s3.fs()
    fs.pipe("corpus/change/docs.jsonl", b'{"text": "one"}\n{"text": "two"}\n')
    first_id, first_out = submitted(invoke(env, "submit", "--corpus", "s3://corpus/change"))
    same = invoke(env, "submit", "--corpus", "s3://corpus/change")
    assert f"attaching to {first_id} (SUCCEEDED)" in same.stdout
    fs.pipe("corpus/change/docs.jsonl", b'{"text": "one"}\n{"text": "two"}\n{"text": "three"}\n')
    done = invoke(env, "submit", "--corpus", "s3://corpus/change")
    second_id, second_out = submitted(done)
    assert second_id != first_id and second_out != first_out
    assert f"corpus changed since {first_id} ran" in done.stdout
    assert f"ran anew: corpus changed since {first_id} ran" in done.stdout
    assert manifest_of(s3, second_out)["counts"]["ok"] == 3
    assert manifest_of(s3, first_out)["counts"]["ok"] == 2


def test_a_changed_entrypoint_script_runs_anew_and_an_unchanged_one_attaches(head, s3, tmp_path):
    # The script's own directory: the state file and results stay outside what it uploads.
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_job.py").write_text("print('version one')\n")
    env = env_for(head, s3, str(tmp_path / "results"))

    def submit() -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "invoke", "-r", str(ROOT), "submit", "--entrypoint", "python my_job.py"]
        return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)

    first_id, _ = submitted(submit())
    assert f"attaching to {first_id} (SUCCEEDED)" in submit().stdout
    (work / "my_job.py").write_text("print('version two')\n")
    done = submit()
    second_id, _ = submitted(done)
    assert second_id != first_id
    assert f"code changed since {first_id} ran" in done.stdout
    assert "version two" in invoke(env, "logs", "--job", second_id).stdout


def test_spec_json_on_s3_is_created_by_one_of_two_jobs(s3, monkeypatch):
    """`If-None-Match: *` on the store: the second create is refused, not a silent overwrite."""
    from job.output import Output

    for name, value in {**s3.credentials(), "AWS_ENDPOINT_URL_S3": s3.endpoint}.items():
        monkeypatch.setenv(name, value)
    s3.fs().mkdir("exclusive")
    output = Output("s3://exclusive/out")
    assert output.create_json("spec.json", {"job": 1}) is True
    assert output.create_json("spec.json", {"job": 2}) is False
    assert output.read_json("spec.json") == {"job": 1}
