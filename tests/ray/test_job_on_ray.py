"""The job end to end on a real local Ray, with the real MiniLM model and tiny task models."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from models import MINILM, make_tiny_model
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
    assert counts == {"documents": 41, "ok": 41, "error": 0, "missing": 0, "truncated": 0}
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


def test_bad_documents_become_error_rows_and_the_manifest_reconciles(ray_head, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_bytes(b'{"text": "good one"}\n{broken\n{"text": ""}\n{"text": "bad \xff"}\n')
    (corpus / "b.txt").write_bytes(b"\x00binary")
    out = tmp_path / "out"
    run_job(ray_head, "--corpus", corpus, "--output", out)
    manifest, rows = read_output(out)
    counts = manifest["counts"]
    assert counts["documents"] == 5 == counts["ok"] + counts["error"]
    assert counts["ok"] == 1
    assert set(manifest["errors_by_reason"]) == {
        "malformed JSON",
        "empty document",
        "not valid UTF-8",
        "binary content (NUL bytes), not text",
    }


def test_a_different_job_into_the_same_output_is_refused(ray_head, tmp_path):
    out = tmp_path / "out"
    run_job(ray_head, "--corpus", EXAMPLE / "notes.txt", "--output", out)
    done = run_job(ray_head, "--corpus", EXAMPLE / "notes.txt", "--output", out, "--max-length", 16, check=False)
    assert done.returncode == 2
    assert "holds results of a different job (changed: options)" in done.stdout


def test_invoke_submit_runs_on_the_local_ray_and_exits_zero(ray_head, tmp_path):
    env = {**os.environ, "INVOKE_RAYBAKE_LOCAL_DASHBOARD_PORT": str(ray_head.dashboard_port)}
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "submit",
            "--corpus",
            str(EXAMPLE),
            "--output",
            str(out),
            "--name",
            f"t-{os.getpid()}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SUCCEEDED" in done.stdout
    assert "documents: 41 (41 ok, 0 error, 0 missing, 0 truncated)" in done.stdout
    assert (out / "manifest.json").is_file()
    status = subprocess.run(
        [sys.executable, "-m", "invoke", "status", "--job", f"t-{os.getpid()}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "invoke", "status", "--job", "no-such-job"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no job 'no-such-job'" in missing.stderr
