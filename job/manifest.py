"""manifest.json: the run's account, reconciled from the parts' footers, and what it says of the
job's outcome (too many documents failed in the model)."""

from __future__ import annotations

import collections
import datetime as dt
import os
import tempfile
import time
from collections.abc import Iterable
from typing import Any

from job import spec as job_spec
from job.corpus import Shard
from job.output import Output, part_name
from job.pool import PoolRun
from job.records import (
    ByteCounts,
    ChunkCounts,
    Counts,
    Manifest,
    ModelEntry,
    PartEntry,
    ShardCounts,
    Timings,
    Tokens,
)

MANIFEST_FILE = "manifest.json"
# Ids counted at once in memory when the manifest checks their uniqueness; more are spread over
# hash buckets of about this many on local disk, so the count's memory does not grow with the
# corpus (50M ids: 378 MiB peak, under a 1 GiB address space; tests/unit/test_reconcile.py).
DISTINCT_BUCKET_ROWS = 2_000_000
MODEL_FAILED = "model failed"


def build_manifest(
    output: Output,
    shards: list[Shard],
    spec: job_spec.Spec,
    *,
    started: float,
    pool: PoolRun,
    resumed: int,
    plan_seconds: float | None = None,
    command: str = "",
) -> Manifest:
    """The run's account, reconciled from the parts' footers: the documents are those the workers
    read (nobody counted them before), and a shard without a part is missing as a whole. Ids are
    counted part by part, in memory that does not grow with the corpus (`count_distinct`)."""
    finished = output.finished()
    planned = {part_name(s) for s in shards}
    parts: list[PartEntry] = []
    totals: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    sums: collections.Counter[str] = collections.Counter()  # a task's counted columns: generate's tokens
    seconds: collections.Counter[str] = collections.Counter()  # by phase, summed over shards
    missing_shards, missing_bytes = 0, 0
    for shard in shards:
        name = part_name(shard)
        if name not in finished:
            missing_shards += 1
            missing_bytes += shard.bytes
            continue
        stats, rows = output.part_stats(name)
        parts.append(PartEntry(file=f"parts/{name}", rows=rows, shard=shard.id))
        for key in ("documents", "ok", "error", "truncated", "chunks", "chunked", "real_tokens", "padded_tokens"):
            totals[key] += getattr(stats, key)
        totals["bytes_read"] += stats.bytes_read
        reasons.update(stats.errors_by_reason)
        sums.update(stats.column_sums)
        seconds.update(stats.phase_seconds())
    ids = (output.document_ids(part.file.removeprefix("parts/")) for part in parts)
    distinct = count_distinct(ids, rows=totals["documents"])
    wall = time.time() - started
    corpus_bytes = sum(size for _, size, _ in spec["files"])
    first = pool.workers[0] if pool.workers else None
    return Manifest(
        status="complete" if missing_shards == 0 else "incomplete",
        spec=spec,
        counts=Counts(
            documents=totals["documents"],
            ok=totals["ok"],
            error=totals["error"],
            missing=0 if missing_shards == 0 else None,
            truncated=totals["truncated"],
            duplicate_ids=totals["documents"] - distinct,
        ),
        errors_by_reason=dict(reasons),
        chunks=ChunkCounts(total=totals["chunks"], documents_chunked=totals["chunked"]),
        shards=ShardCounts(total=len(shards), resumed=resumed, failed=pool.failed, missing=missing_shards),
        bytes=ByteCounts(
            corpus=corpus_bytes,
            missing=missing_bytes,
            read=totals["bytes_read"],
            read_amplification=round(totals["bytes_read"] / (corpus_bytes - missing_bytes), 4)
            if corpus_bytes > missing_bytes
            else None,
        ),
        parts=parts,
        stale_parts=sorted(finished - planned),
        tokens=Tokens(
            real=totals["real_tokens"],
            padded=totals["padded_tokens"],
            padding_efficiency=round(totals["real_tokens"] / totals["padded_tokens"], 4)
            if totals["padded_tokens"]
            else None,
            sums=dict(sums),
        ),
        timings=Timings(
            started=dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
            finished=dt.datetime.now(dt.UTC).isoformat(),
            wall_seconds=round(wall, 3),
            plan_seconds=round(plan_seconds, 3) if plan_seconds is not None else None,
            read_seconds=round(seconds["read"], 3),
            tokenize_seconds=round(seconds["tokenize"], 3),
            compute_seconds=round(seconds["compute"], 3),
            write_seconds=round(seconds["write"], 3),
            wait_seconds=round(seconds["wait"], 3),
            workers_ready=pool.ready_at,
            processing_seconds=pool.processing_seconds,
        ),
        workers=pool.workers,
        model=ModelEntry(
            name=spec["model"],
            path=first.model_path if first else None,
            revision=first.revision if first else None,
        ),
        versions=job_spec.versions(),
        raybake_version=os.environ.get("RAYBAKE_VERSION"),
        git_sha=os.environ.get("RAYBAKE_GIT_SHA"),
        image=os.environ.get("RAYBAKE_IMAGE"),
        expected_image=os.environ.get("RAYBAKE_EXPECTED_IMAGE"),
        command=command,
    )


def too_many_errors(manifest: Manifest, *, max_rate: float) -> str | None:
    """Why the job fails for its `model failed` rows, or None: a model that fails on more than
    `max_rate` of the documents is broken (a damaged device, a wrong model), not unlucky."""
    documents, failed = manifest.counts.documents, manifest.errors_by_reason.get(MODEL_FAILED, 0)
    if not documents or failed / documents <= max_rate:
        return None
    return (
        f"{failed} of {documents} documents ({failed / documents:.1%}) failed in the model, over "
        f"--max-error-rate {max_rate!r}; see their `error` column, fix the cause and run again into a new --output"
    )


def count_distinct(parts: Iterable[Any], *, rows: int) -> int:
    """Distinct values over the id arrays of `parts` (about `rows` in all), exactly, in memory
    that does not grow with them: up to DISTINCT_BUCKET_ROWS in memory at once; more are
    spread over hash buckets on local disk (an equal id always lands in the same bucket), and
    the buckets are counted one at a time."""
    # Here, not at the top: `python -m job --check`, the client's pre-submit check, starts faster.
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    buckets = -(-rows // DISTINCT_BUCKET_ROWS)
    if buckets <= 1:
        return int(pc.count_distinct(pa.chunked_array(list(parts), type=pa.string())).as_py())
    schema = pa.schema([("id", pa.string())])
    with tempfile.TemporaryDirectory(prefix="raybake-ids-") as spill:
        paths = [f"{spill}/{b}.arrow" for b in range(buckets)]
        sinks = [pa.OSFile(path, "wb") for path in paths]
        writers = [pa.ipc.new_stream(sink, schema) for sink in sinks]
        for ids in parts:
            bucket = _buckets(ids, buckets)
            order = np.argsort(bucket, kind="stable")
            ordered = ids.take(pa.array(order))
            bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
            for b, writer in enumerate(writers):
                if bounds[b + 1] > bounds[b]:
                    part = ordered.slice(bounds[b], bounds[b + 1] - bounds[b])
                    writer.write_batch(pa.record_batch([part], schema=schema))
        for writer, sink in zip(writers, sinks, strict=True):
            writer.close()
            sink.close()
        total = 0
        for path in paths:
            with pa.OSFile(path, "rb") as source:
                total += pc.count_distinct(pa.ipc.open_stream(source).read_all().column("id")).as_py()
        return total


def _buckets(ids: Any, buckets: int) -> Any:
    """Each id's bucket, from a hash of its bytes computed on the Arrow buffers (no Python per id):
    a sum over its bytes, each times a fixed random odd number for its position (mod 64), mixed."""
    import numpy as np
    import pyarrow as pa

    weights = np.random.default_rng(0x5EED).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)

    ids = ids.cast(pa.large_string())
    n = len(ids)
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int64)[ids.offset : ids.offset + n + 1]
    data = ids.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    starts = offsets - offsets[0]
    position = np.arange(len(raw), dtype=np.int64) - np.repeat(starts[:-1], np.diff(starts))
    mixed = (raw.astype(np.uint64) + np.uint64(1)) * weights[position % 64]
    sums = np.concatenate([np.zeros(1, np.uint64), np.cumsum(mixed, dtype=np.uint64)])
    h = sums[starts[1:]] - sums[starts[:-1]]
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return (h % np.uint64(buckets)).astype(np.int64)
