"""The job end to end on a real local Ray, with the real MiniLM model and tiny task models."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from badinputs import make_bad_corpus, rows_by_file
from models import MINILM, make_tiny_model
from raycluster import invoke, start_head
from transformers import AutoModel, AutoTokenizer

from raybake.versions import ROOT

EXAMPLE = ROOT / "examples" / "corpus"


def run_job(head, *args, check=True):
    done = subprocess.run(
        [sys.executable, "-m", "job", *map(str, args)],
        cwd=ROOT,
        env=head.job_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"job failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def read_output(out):
    manifest = json.loads((out / "manifest.json").read_text())
    rows = pq.read_table(out / "parts").to_pylist()
    return manifest, rows


def reference_embeddings(texts):
    tokenizer, model = AutoTokenizer.from_pretrained(MINILM), AutoModel.from_pretrained(MINILM)
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def test_embeddings_of_the_example_corpus_match_plain_transformers(ray_head, tmp_path):
    out = tmp_path / "out"
    run_job(ray_head, "--corpus", EXAMPLE, "--output", out, "--shard-size", 8, "--id-field", "id")
    manifest, rows = read_output(out)
    texts = [json.loads(line)["text"] for line in (EXAMPLE / "articles.jsonl").read_text().splitlines()]
    texts.append((EXAMPLE / "notes.txt").read_text())
    by_source = {r["source"]: r for r in rows}
    ordered = [by_source[f"articles.jsonl:{i + 1}"] for i in range(len(texts) - 1)] + [by_source["notes.txt"]]
    got = np.array([r["embedding"] for r in ordered], dtype=np.float32)
    cosine = np.sum(got * reference_embeddings(texts), axis=1)
    assert cosine.min() >= 0.999
    assert ordered[0]["id"] == "doc-001"
    counts = manifest["counts"]
    assert counts == {"documents": 41, "ok": 41, "error": 0, "missing": 0, "truncated": 0, "duplicate_ids": 0}
    assert manifest["status"] == "complete" and manifest["shards"]["total"] == 6
    assert manifest["versions"]["ray"] and manifest["model"]["path"] == MINILM
    assert 0 < manifest["tokens"]["padding_efficiency"] <= 1


@pytest.mark.parametrize("task", ["classify", "ner", "generate"])
def test_each_task_runs_on_ray_with_a_tiny_model(ray_head, tmp_path, task):
    model = make_tiny_model(task, tmp_path / "model")
    out = tmp_path / "out"
    run_job(
        ray_head,
        "--corpus",
        EXAMPLE,
        "--output",
        out,
        "--task",
        task,
        "--model",
        model,
        "--max-new-tokens",
        4,
        "--top-k",
        2,
    )
    manifest, rows = read_output(out)
    assert manifest["counts"]["ok"] == len(rows) == 41
    column = {"classify": "label", "ner": "entities", "generate": "generated_text"}[task]
    assert all(r[column] is not None for r in rows)


def test_rerun_after_a_partial_run_processes_only_missing_shards(ray_head, tmp_path):
    out = tmp_path / "out"
    args = ("--corpus", EXAMPLE, "--output", out, "--shard-size", 10)
    run_job(ray_head, *args)
    first_manifest, first_rows = read_output(out)
    parts = sorted((out / "parts").iterdir())
    mtimes = {p.name: p.stat().st_mtime_ns for p in parts}
    parts[1].unlink()  # as if the run had stopped before this shard finished
    done = run_job(ray_head, *args)
    assert "resuming: 4 shard(s) already done, 1 to go" in done.stdout
    manifest, rows = read_output(out)
    assert manifest["shards"]["resumed"] == 4
    assert {p.name: p.stat().st_mtime_ns for p in sorted((out / "parts").iterdir()) if p.name != parts[1].name} == {
        k: v for k, v in mtimes.items() if k != parts[1].name
    }
    assert sorted(r["source"] for r in rows) == sorted(r["source"] for r in first_rows)
    assert manifest["counts"] == first_manifest["counts"]


def test_the_bad_input_matrix_ends_in_rows_with_reasons_on_ray(ray_head, tmp_path):
    expected = make_bad_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    done = run_job(ray_head, "--corpus", tmp_path / "corpus", "--output", out, "--shard-size", 8)
    assert "warning: 'cut.jsonl.gz' cannot be read to its end (EOFError" in done.stdout
    manifest, rows = read_output(out)
    assert rows_by_file(rows) == expected
    counts = manifest["counts"]
    assert counts["documents"] == counts["ok"] + counts["error"] == len(rows) == len({r["source"] for r in rows})
    assert counts["missing"] == 0 and not manifest["shards"]["failed"]


def test_a_different_job_into_the_same_output_is_refused(ray_head, tmp_path):
    out = tmp_path / "out"
    run_job(ray_head, "--corpus", EXAMPLE / "notes.txt", "--output", out)
    done = run_job(ray_head, "--corpus", EXAMPLE / "notes.txt", "--output", out, "--max-length", 16, check=False)
    assert done.returncode == 2
    assert "holds results of a different job (changed: options)" in done.stdout


@pytest.fixture(scope="module")
def open_head():
    """A head with auth off (RAY_AUTH_MODE=disabled), as a cluster behind its own network boundary runs."""
    head = start_head(num_cpus=1, auth_mode="disabled")
    yield head
    head.stop()


def test_invoke_submit_status_and_logs_on_a_head_without_auth(open_head, tmp_path):
    env = open_head.invoke_env(tmp_path / "results")
    done = invoke(env, "submit", "--corpus", str(EXAMPLE / "notes.txt"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "documents: 1 (1 ok, 0 error, 0 missing, 0 truncated)" in done.stdout
    job_id = re.search(r"submitted (\S+);", done.stdout).group(1)
    assert invoke(env, "status", "--job", job_id).stdout == f"{job_id}: SUCCEEDED (Job finished successfully.)\n"
    assert "raybake: done: 1 ok" in invoke(env, "logs", "--job", job_id).stdout


def test_invoke_submit_keeps_paths_as_data_and_secrets_out_of_everything_it_prints_and_writes(ray_head, tmp_path):
    # A corpus path a shell would act on: quotes, $(...), backticks, spaces. It must stay data.
    corpus = tmp_path / 'it\'s a "corpus" $(touch pwned) `touch pwned2`'
    shutil.copytree(EXAMPLE, corpus)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("users: [{name: u, user: {token: planted-secret-kube-XYZ}}]\n")
    secrets = {
        "RAY_AUTH_TOKEN": ray_head.token,  # the real one: it must work and still never show
        "HF_TOKEN": "planted-secret-hf-XYZ",
        "AWS_SECRET_ACCESS_KEY": "planted-secret-aws-XYZ",
        "RAYBAKE_REGISTRY_PASSWORD": "planted-secret-registry-XYZ",
        "KUBECONFIG": str(kubeconfig),
    }
    env = ray_head.invoke_env(tmp_path / "results", **secrets)
    done = invoke(env, "submit", "--corpus", str(corpus))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SUCCEEDED" in done.stdout
    assert "documents: 41 (41 ok, 0 error, 0 missing, 0 truncated)" in done.stdout
    job_id = re.search(r"submitted (\S+);", done.stdout).group(1)
    out = tmp_path / "results" / job_id
    assert json.loads((out / "manifest.json").read_text())["spec"]["corpus"] == str(corpus)
    assert not list(tmp_path.rglob("pwned*")) and not list(ROOT.glob("pwned*"))

    status = invoke(env, "status", "--job", job_id)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    missing = invoke(env, "status", "--job", "no-such-job")
    assert missing.returncode == 2 and "no job 'no-such-job'" in missing.stderr

    driver_log = Path(ray_head.temp_dir) / "session_latest" / "logs" / f"job-driver-{job_id}.log"
    seen = {
        "submit output": (done.stdout + done.stderr).encode(),
        "invoke logs": invoke(env, "logs", "--job", job_id).stdout.encode(),
        "invoke jobs": invoke(env, "jobs").stdout.encode(),
        "driver log": driver_log.read_bytes(),
        # Every log of the Ray session: the supervisor's, the dashboard's, the workers'.
        **{str(f): f.read_bytes() for f in Path(ray_head.temp_dir).rglob("*") if f.suffix in (".log", ".out", ".err")},
        **{str(f.relative_to(out)): f.read_bytes() for f in out.rglob("*") if f.is_file()},
    }
    assert b"raybake: done: 41 ok" in seen["driver log"] and "manifest.json" in seen
    planted = [secrets["RAY_AUTH_TOKEN"], "planted-secret"]
    leaks = [(where, secret) for where, data in seen.items() for secret in planted if secret.encode() in data]
    assert not leaks
