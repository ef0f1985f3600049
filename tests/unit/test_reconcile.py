"""job/manifest.py's reconciliation: the manifest counts every part's documents and checks their ids in
memory that does not grow with the corpus; a finished part that cannot be read is redone; a job's
identity decides whether a rerun may resume into an output."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from job import driver, manifest
from job import spec as job_spec
from job.config import RunConfig, TaskOptions, WorkerConfig
from job.corpus import CorpusFile, Fields, Piece, Shard
from job.output import STATS_KEY, Output, part_name

ROOT = Path(__file__).resolve().parents[2]
PARTS, IDS_PER_PART, OVERLAP = 200, 100_000, 10
STATS = {
    "ok": 0,
    "error": 0,
    "truncated": 0,
    "chunks": 0,
    "chunked": 0,
    "errors_by_reason": {},
    "real_tokens": 0,
    "padded_tokens": 0,
    "bytes_read": 0,
    **{f"{k}_seconds": 0.0 for k in ("read", "tokenize", "compute", "write", "wait")},
}


def shards(count: int) -> list[Shard]:
    return [Shard(i, (Piece(CorpusFile(f"f{i}", f"f{i}", "jsonl", False, 1000), 0, 1000),)) for i in range(count)]


def write_part(out: Path, shard: Shard, ids: pa.Array, **extra: pa.Array) -> None:
    table = pa.table({"id": ids, **extra})
    with pq.ParquetWriter(out / "parts" / part_name(shard), table.schema) as writer:
        writer.write_table(table)
        stats = {**STATS, "documents": len(ids), "ok": len(ids)}
        writer.add_key_value_metadata({STATS_KEY.decode(): json.dumps(stats)})


def ids(start: int, count: int) -> pa.Array:
    return pc.binary_join_element_wise("doc-", pc.cast(pa.array(range(start, start + count)), pa.string()), "")


def test_the_manifest_of_200_parts_of_100k_ids_is_built_under_a_1_gib_address_space(tmp_path):
    out = tmp_path / "out"
    Output(str(out))
    for shard in shards(PARTS):  # each part shares OVERLAP ids with the one before
        write_part(out, shard, ids(shard.index * (IDS_PER_PART - OVERLAP), IDS_PER_PART))
    script = textwrap.dedent(f"""
        import resource, sys, time
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        sys.path.insert(0, {str(ROOT / "tests" / "unit")!r})
        from test_reconcile import shards
        from job.output import Output
        from job.manifest import build_manifest
        from job.pool import PoolRun
        clock = time.perf_counter()
        manifest = build_manifest(
            Output({str(out)!r}), shards({PARTS}), {{"files": [], "model": "m"}},
            started=time.time(), pool=PoolRun(), resumed=0,
        ).to_json()
        print(manifest["counts"]["documents"], manifest["counts"]["duplicate_ids"], manifest["status"])
        print(f"{{time.perf_counter() - clock:.1f}}s")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = done.stdout.splitlines()[0].split()
    assert counts == [str(PARTS * IDS_PER_PART), str((PARTS - 1) * OVERLAP), "complete"], done.stdout


@pytest.mark.parametrize("rows", [1000, 50_000])
def test_distinct_ids_are_counted_exactly_in_memory_and_over_buckets(monkeypatch, rows):
    monkeypatch.setattr(manifest, "DISTINCT_BUCKET_ROWS", 7_000)  # 50k ids: eight buckets on disk
    parts = [ids(i * 900, 1000) for i in range(rows // 1000)] + [pa.array(["", "é", "doc-5"])]
    everything = pa.chunked_array(parts)
    assert manifest.count_distinct(iter(parts), rows=len(everything)) == pc.count_distinct(everything).as_py()


def test_a_document_cut_into_chunks_counts_once(tmp_path):
    out = tmp_path / "out"
    output = Output(str(out))
    (shard,) = shards(1)
    write_part(out, shard, pa.array(["a", "a", "a", "b", "c"]), chunk=pa.array([0, 1, 2, None, 0]))
    assert output.document_ids(part_name(shard)).to_pylist() == ["a", "b", "c"]


@pytest.mark.parametrize("body", [b"", b"PAR1 cut short"], ids=["empty", "cut"])
def test_a_finished_part_that_cannot_be_read_is_moved_aside_and_its_shard_redone(tmp_path, body):
    out = tmp_path / "out"
    output = Output(str(out))
    good, bad = shards(2)
    write_part(out, good, ids(0, 10))
    (out / "parts" / part_name(bad)).write_bytes(body)
    assert driver.finished(output, [good, bad]) == {part_name(good)}
    assert output.finished() == {part_name(good)}
    (aside,) = (out / "parts" / ".damaged").iterdir()
    assert aside.name.startswith(part_name(bad)) and aside.read_bytes() == body


def manifest_of(documents: int, model_failed: int) -> SimpleNamespace:
    """The two fields of a Manifest that its error rate reads."""
    return SimpleNamespace(
        counts=SimpleNamespace(documents=documents),
        errors_by_reason={"model failed": model_failed, "empty document": 9},
    )


def test_more_model_failures_than_the_error_rate_fail_the_job_in_one_line():
    assert manifest.too_many_errors(manifest_of(100, 5), max_rate=0.05) is None
    assert manifest.too_many_errors(manifest_of(0, 0), max_rate=0.05) is None
    why = manifest.too_many_errors(manifest_of(100, 6), max_rate=0.05)
    assert (
        why.startswith("6 of 100 documents (6.0%) failed in the model, over --max-error-rate 0.05") and "\n" not in why
    )


def test_spec_json_is_created_by_one_of_two_jobs_racing(tmp_path):
    output, won = Output(str(tmp_path / "out")), []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        if output.create_json("spec.json", {"job": i}):
            won.append(i)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and output.read_json("spec.json") == {"job": won[0]}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["parts", "spec.json"]  # no temp file left


PRESIGNED = (
    "https://store.example/bucket/c.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={key}%2F{day}%2Fus-east-1"
    "&X-Amz-Date={day}T101010Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}&x-id=GetObject"
)


def spec(corpus: str, model: str) -> dict:
    config = RunConfig(
        worker=WorkerConfig(
            task="embed",
            model=model,
            options=TaskOptions(),
            fields=Fields(),
            corpus=corpus,
            output="out",
            token_budget=None,
            max_batch_size=8,
            threads=1,
        ),
        split_bytes=1 << 20,
        workers=None,
        cpus_per_worker=None,
        retries=3,
        check_only=False,
    )
    return json.loads(json.dumps(job_spec.of(config, [CorpusFile("c.jsonl", "c.jsonl", "jsonl", False, 10, '"etag"')])))


def test_a_corpus_presigned_again_is_the_same_job_and_a_changed_model_directory_is_not(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    first = spec(PRESIGNED.format(key="AKIA1", day="20261126", sig="aaaa"), str(model))
    again = spec(PRESIGNED.format(key="AKIA2", day="20261203", sig="bbbb"), str(model))
    assert job_spec.identity(first) == job_spec.identity(again)
    other_object = spec(
        PRESIGNED.format(key="AKIA2", day="20261203", sig="bbbb").replace("c.jsonl?", "d.jsonl?"), str(model)
    )
    assert job_spec.identity(first) != job_spec.identity(other_object)

    (model / "model.safetensors").write_bytes(b"other weights")
    changed = spec(PRESIGNED.format(key="AKIA1", day="20261126", sig="aaaa"), str(model))
    assert job_spec.identity(first) != job_spec.identity(changed)
    assert job_spec.difference("out", first, changed) == (
        "'out' holds results of a different job (changed: model_files); choose another --output or delete it"
    )
    assert first["code"] and first["versions"]["pyarrow"] == pa.__version__
