"""One worker: loads the model once, then turns shards into Parquet parts.

Runs as a Ray actor (one per GPU, or per group of CPUs). The driver keeps two shards in flight
per worker and the actor runs two threads: one reads and tokenizes the next shard while the
other holds the model, so the accelerator does not wait for the tokenizer.
"""

from __future__ import annotations

import collections
import os
import socket
import threading
import time
from typing import Any

import fsspec
import pyarrow as pa
import torch
import transformers

from job import urls
from job.batching import token_budget_batches
from job.config import TOKEN_BUDGET, WorkerConfig
from job.corpus import Shard, read_shard
from job.output import Output, part_name
from job.pipelines import TASKS

BASE_COLUMNS = [
    pa.field("id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("error", pa.string()),
    pa.field("n_tokens", pa.int32()),
    pa.field("truncated", pa.bool_()),
]


class ShardWorker:
    def __init__(self, config: WorkerConfig, *, started: float | None = None) -> None:
        # `started` lets the caller count the framework imports as part of loading the model.
        started = started or time.perf_counter()
        torch.set_num_threads(config.threads)
        # Per-worker download/load bars interleave into unreadable job logs.
        transformers.utils.logging.disable_progress_bar()
        self.config = config
        self.task = TASKS[config.task](config.model, config.options)
        self.corpus_fs = fsspec.core.url_to_fs(config.corpus, **urls.fs_options(config.corpus))[0]
        self.output = Output(config.output)
        self.schema = pa.schema(BASE_COLUMNS + self.task.columns())
        self.model_lock = threading.Lock()
        self.load_seconds = time.perf_counter() - started

    def info(self) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(self.task.device),
            "dtype": str(self.task.dtype).removeprefix("torch."),
            "threads": torch.get_num_threads(),
            "model_path": self.task.model_path,
            "revision": self.task.revision,
            "max_length": self.task.max_length,
            "load_seconds": round(self.load_seconds, 3),
        }

    def process(self, shard: Shard) -> dict[str, Any]:
        started = time.perf_counter()
        docs = read_shard(self.corpus_fs, shard, self.config.fields)
        valid = [i for i, d in enumerate(docs) if d.error is None]
        encoded = self.task.encode([docs[i].text for i in valid])
        lengths = [len(ids) for ids in encoded.ids]
        batches = token_budget_batches(
            lengths,
            token_budget=self.config.token_budget or TOKEN_BUDGET[self.task.device.type],
            max_batch_size=self.config.max_batch_size,
            extra=self.task.reserved_tokens,
        )
        results: dict[int, dict[str, Any]] = {}
        errors: dict[int, str] = {i: d.error for i, d in enumerate(docs) if d.error is not None}
        with self.model_lock, torch.inference_mode():
            compute_started = time.perf_counter()
            for batch in batches:
                time.sleep(self.config.pause_per_batch)
                self._infer(batch.indices, valid, docs, encoded, results, errors)
        compute_seconds = time.perf_counter() - compute_started

        n_tokens = dict(zip(valid, lengths, strict=True))
        truncated = dict(zip(valid, encoded.truncated, strict=True))
        rows = []
        for i, doc in enumerate(docs):
            row = {"id": doc.id, "source": doc.source, "error": errors.get(i)}
            row["n_tokens"] = n_tokens.get(i)
            row["truncated"] = truncated.get(i, False)
            row.update(results.get(i, {}))
            rows.append(row)
        table = pa.Table.from_pylist(rows, schema=self.schema)
        stats = {
            "shard": shard.id,
            "documents": len(docs),
            "ok": len(results),
            "error": len(errors),
            "truncated": sum(encoded.truncated),
            "errors_by_reason": dict(collections.Counter(_reason(e) for e in errors.values())),
            "real_tokens": sum(lengths),
            "padded_tokens": sum(b.padded_tokens for b in batches),
            "batches": len(batches),
            "seconds": round(time.perf_counter() - started, 4),
            "compute_seconds": round(compute_seconds, 4),
        }
        self.output.write_part(part_name(shard), table, stats)
        return stats

    def _infer(self, indices, valid, docs, encoded, results, errors) -> None:
        """Run one batch; on failure split it, so one bad document costs only its own row."""
        positions = list(indices)
        doc_ids = [valid[p] for p in positions]
        try:
            batch = self.task.collate(
                [encoded.ids[p] for p in positions],
                [docs[d].text for d in doc_ids],
                [encoded.offsets[p] for p in positions] if encoded.offsets else None,
            )
            rows = self.task.infer(batch)
        except Exception as exc:  # noqa: BLE001 - a model failure must become rows, not a lost shard
            if self.task.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(positions) == 1:
                errors[doc_ids[0]] = f"model failed: {type(exc).__name__}: {exc}"[:500]
                return
            half = len(positions) // 2
            for part in (positions[:half], positions[half:]):
                self._infer(part, valid, docs, encoded, results, errors)
            return
        results.update(zip(doc_ids, rows, strict=True))


def _reason(error: str) -> str:
    """The kind of an error, for the manifest's tally: errors read "kind: detail"."""
    return error.split(":", 1)[0]
