"""One worker: loads the model once, then streams shards into Parquet parts.

Runs as a Ray actor (one per GPU, or per group of CPUs). A shard streams through in chunks of
documents, so a worker's memory does not grow with the shard or the corpus. Within a shard a
reader thread reads and tokenizes the next chunk while the model computes this one: the model
waits for input only when reading and tokenizing are slower than computing, and the manifest
says how long it waited.
"""

from __future__ import annotations

import collections
import os
import queue
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import torch
import transformers

from job import urls
from job.batching import token_budget_batches
from job.config import WorkerConfig, token_budget
from job.corpus import Document, Shard, Tally, read_shard
from job.output import Output, part_name
from job.pipelines import TASKS
from job.pipelines.base import Encoded
from job.records import PHASES, ShardStats, WorkerInfo

BASE_COLUMNS = [
    pa.field("id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("error", pa.string()),
    pa.field("n_tokens", pa.int32()),
    pa.field("truncated", pa.bool_()),
]
# Under --long-documents chunk, where a task keeps a row per window: which window of the
# document (0..n-1) and the characters of the document it covers.
WINDOW_COLUMNS = [
    pa.field("chunk", pa.int32()),
    pa.field("char_start", pa.int32()),
    pa.field("char_end", pa.int32()),
]
# Documents per chunk, and the text bytes at which a chunk closes early: what a worker holds
# of a shard at a time. Big enough for length-sorted batches and cheap row groups.
CHUNK_DOCS = 8192
CHUNK_BYTES = 16 << 20
# Chunks read and tokenized ahead of the model.
READ_AHEAD = 2


# A batch's results: the positions of its sequences (Encoded's), and its task columns in that order.
_Result = tuple[list[int], dict[str, Any]]


class _Chunk:
    def __init__(self, docs: list[Document], valid: list[int], encoded: Encoded) -> None:
        self.docs, self.valid, self.encoded = docs, valid, encoded


class ShardWorker:
    """Holds one loaded model; `process` takes each shard's job settings with it, so a warm
    worker (job/pool.py) serves later jobs of the same model without loading it again."""

    def __init__(self, config: WorkerConfig, *, started: float | None = None) -> None:
        # `started` lets the caller count the framework imports as part of loading the model.
        started = started or time.perf_counter()
        torch.set_num_threads(config.threads)
        # Per-worker download/load bars interleave into unreadable job logs.
        transformers.utils.logging.disable_progress_bar()
        self.config = config
        self.task = TASKS[config.task](config.model, config.options)
        windows = WINDOW_COLUMNS if self.task.window_rows else []
        self.schema = pa.schema(BASE_COLUMNS + windows + self.task.columns())
        self.budget = token_budget(self.task.device.type, self.task.config)
        self.model_lock = threading.Lock()
        self.filesystems: dict[str, fsspec.AbstractFileSystem] = {}
        self.load_seconds = time.perf_counter() - started

    def info(self, config: WorkerConfig | None = None) -> WorkerInfo:
        """This worker as a job under `config` (default: the worker's own) gets it."""
        config = config or self.config
        return WorkerInfo(
            host=socket.gethostname(),
            pid=os.getpid(),
            device=str(self.task.device),
            dtype=str(self.task.dtype).removeprefix("torch."),
            threads=torch.get_num_threads(),
            model_path=self.task.model_path,
            revision=self.task.revision,
            max_length=self.task.max_length,
            token_budget=config.token_budget or self.budget,
            load_seconds=round(self.load_seconds, 3),
        )

    def _filesystem(self, corpus: str) -> fsspec.AbstractFileSystem:
        if corpus not in self.filesystems:
            self.filesystems[corpus] = fsspec.core.url_to_fs(corpus, **urls.fs_options(corpus))[0]
        return self.filesystems[corpus]

    def _chunks(self, shard: Shard, config: WorkerConfig, tally: Tally, timers: dict[str, float]) -> Iterator[_Chunk]:
        fs = self._filesystem(config.corpus)
        docs = read_shard(fs, shard, config.fields, max_record_bytes=config.max_record_bytes, tally=tally)
        while True:
            clock = time.perf_counter()
            chunk: list[Document] = []
            size = 0
            for doc in docs:
                chunk.append(doc)
                size += len(doc.text) if doc.text else 0
                if len(chunk) >= CHUNK_DOCS or size >= CHUNK_BYTES:
                    break
            timers["read"] += time.perf_counter() - clock
            if not chunk:
                return
            clock = time.perf_counter()
            valid = [i for i, d in enumerate(chunk) if d.error is None]
            encoded = self.task.encode([_text(chunk[i]) for i in valid])
            timers["tokenize"] += time.perf_counter() - clock
            yield _Chunk(chunk, valid, encoded)

    def process(
        self, shard: Shard, config: WorkerConfig | None = None, *, cancelled: Callable[[], bool] = lambda: False
    ) -> ShardStats:
        """Read, tokenize, compute and write one shard under `config`'s job settings (default:
        the worker's own); its model settings must be those this worker loaded. `cancelled` is
        asked between chunks: a job that was stopped leaves no work running behind it."""
        started = time.perf_counter()
        config = config or self.config
        if config.model_settings() != self.config.model_settings():
            raise ValueError(f"this worker holds {self.config.model_settings()!r}, not {config.model_settings()!r}")
        # Whatever a reader's error quotes of a presigned corpus URL, its rows show it masked.
        urls.hide(config.corpus, config.output)
        timers = dict.fromkeys(PHASES, 0.0)
        tally = Tally()
        ahead: queue.Queue = queue.Queue(maxsize=READ_AHEAD)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    ahead.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for chunk in self._chunks(shard, config, tally, timers):
                    if not put(chunk):
                        return
                put(None)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the consumer
                put(exc)

        reader = threading.Thread(target=produce, name=f"read-{shard.id}", daemon=True)
        reader.start()
        totals: collections.Counter[str] = collections.Counter()
        reasons: collections.Counter[str] = collections.Counter()
        try:
            with Output(config.output).part_writer(part_name(shard), self.schema) as part:
                while True:
                    clock = time.perf_counter()
                    chunk = ahead.get()
                    timers["wait"] += time.perf_counter() - clock
                    if chunk is None:
                        break
                    if isinstance(chunk, BaseException):
                        raise chunk
                    if cancelled():
                        raise ShardCancelled(f"shard {shard.id} cancelled: its job was stopped")
                    table = self._compute(chunk, config, totals, reasons, timers)
                    clock = time.perf_counter()
                    part(table)
                    timers["write"] += time.perf_counter() - clock
                part.stats = stats = ShardStats(
                    shard=shard.id,
                    documents=totals["documents"],
                    ok=totals["ok"],
                    error=totals["error"],
                    truncated=totals["truncated"],
                    chunks=totals["chunks"],
                    chunked=totals["chunked"],
                    errors_by_reason=dict(reasons),
                    real_tokens=totals["real_tokens"],
                    padded_tokens=totals["padded_tokens"],
                    batches=totals["batches"],
                    column_sums={name: totals[name] for name in self.task.summed},
                    bytes_planned=shard.bytes,
                    bytes_read=tally.bytes_read,
                    seconds=round(time.perf_counter() - started, 4),
                    peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    read_seconds=round(timers["read"], 4),
                    tokenize_seconds=round(timers["tokenize"], 4),
                    compute_seconds=round(timers["compute"], 4),
                    write_seconds=round(timers["write"], 4),
                    wait_seconds=round(timers["wait"], 4),
                )
        finally:
            stop.set()
            reader.join()
        return stats

    def _compute(
        self,
        chunk: _Chunk,
        config: WorkerConfig,
        totals: collections.Counter[str],
        reasons: collections.Counter[str],
        timers: dict[str, float],
    ) -> pa.Table:
        docs, encoded = chunk.docs, chunk.encoded
        lengths = [len(ids) for ids in encoded.ids]
        batches = token_budget_batches(
            lengths,
            token_budget=config.token_budget or self.budget,
            max_batch_size=config.max_batch_size,
            extra=self.task.reserved_tokens,
        )
        errors: dict[int, str] = {i: d.error for i, d in enumerate(docs) if d.error is not None}
        done: list[_Result] = []
        with self.model_lock, torch.inference_mode():
            clock = time.perf_counter()
            for batch in batches:
                self._infer(list(batch.indices), chunk, done, errors)
            timers["compute"] += time.perf_counter() - clock

        clock = time.perf_counter()
        table = self._table(chunk, lengths, done, errors)
        timers["write"] += time.perf_counter() - clock
        totals["documents"] += len(docs)
        totals["ok"] += len(docs) - len(errors)
        totals["error"] += len(errors)
        totals["truncated"] += sum(encoded.truncated)
        if self.task.chunked:
            totals["chunks"] += len(lengths)
            totals["chunked"] += int((np.bincount(encoded.text_of, minlength=1) > 1).sum())
        totals["real_tokens"] += sum(lengths)
        totals["padded_tokens"] += sum(b.padded_tokens for b in batches)
        totals["batches"] += len(batches)
        for name in self.task.summed:
            totals[name] += sum(int(np.sum(columns[name])) for _, columns in done)
        reasons.update(_reason(e) for e in errors.values())
        return table

    def _table(self, chunk: _Chunk, lengths: list[int], done: list[_Result], errors: dict[int, str]) -> pa.Table:
        """Columns straight from NumPy buffers: results come back in batch order and are put in
        sequence order with one `take`. A row per document, or per window of one where the task
        keeps those; a document that failed is one row, its error, with nulls."""
        docs, encoded, n = chunk.docs, chunk.encoded, len(chunk.docs)
        seq_doc = np.asarray(chunk.valid, dtype=np.int64)[np.asarray(encoded.text_of, dtype=np.int64)]
        seq_len = np.asarray(lengths, dtype=np.int64)
        failed = np.zeros(n, dtype=bool)
        failed[list(errors)] = True
        # Sequences of the documents that have a result: every one of them was computed.
        kept = np.flatnonzero(~failed[seq_doc])
        order = np.concatenate([np.asarray(seqs, dtype=np.int64) for seqs, _ in done]) if done else np.zeros(0, int)
        at = np.full(len(seq_doc), -1, dtype=np.int64)
        at[order] = np.arange(len(order))
        results = {}
        for field in self.task.columns():
            parts = [_to_arrow(cols[field.name], field.type) for _, cols in done]
            values = pa.concat_arrays(parts) if parts else pa.array([], field.type)
            results[field.name] = values.take(pa.array(at[kept]))
        result_doc, result_len = seq_doc[kept], seq_len[kept]
        windows: list[pa.Array] = []
        if self.task.window_rows:
            first = np.searchsorted(encoded.text_of, encoded.text_of, side="left")
            spans = np.asarray(encoded.spans, dtype=np.int32).reshape(-1, 2)[kept]
            windows = [(np.arange(len(seq_doc)) - first)[kept].astype(np.int32), spans[:, 0], spans[:, 1]]
        elif self.task.chunked and len(kept):
            starts = np.flatnonzero(np.r_[True, result_doc[1:] != result_doc[:-1]])
            results = self.task.merge_windows(results, np.r_[starts, len(kept)])
            result_doc, result_len = result_doc[starts], np.add.reduceat(result_len, starts)
        # Rows in document order: each result, and one row per failed document.
        failed_docs = np.flatnonzero(failed)
        row_doc = np.concatenate([result_doc, failed_docs])
        row_result = np.concatenate([np.arange(len(result_doc)), np.full(len(failed_docs), -1)])
        by_doc = np.argsort(row_doc, kind="stable")
        row_doc, row_result = row_doc[by_doc], row_result[by_doc]
        null = row_result < 0
        index = pa.array(row_result, mask=null)
        # A failed document still counts its tokens, where it had any.
        doc_tokens = np.bincount(seq_doc, weights=seq_len, minlength=n).astype(np.int32)
        has_tokens = np.bincount(seq_doc, minlength=n) > 0
        # (An error row's -1 picks the 0 appended to the results' lengths; np.where takes the other.)
        n_tokens = np.where(null, doc_tokens[row_doc], np.r_[result_len, 0][row_result])
        truncated = np.zeros(n, dtype=bool)
        truncated[chunk.valid] = encoded.truncated
        doc_index = pa.array(row_doc)
        columns = [
            pa.array([d.id for d in docs], pa.string()).take(doc_index),
            pa.array([d.source for d in docs], pa.string()).take(doc_index),
            pa.array([errors.get(i) for i in range(n)], pa.string()).take(doc_index),
            pa.array(n_tokens.astype(np.int32), mask=null & ~has_tokens[row_doc]),
            pa.array(truncated[row_doc]),
            *(pa.array(values, pa.int32()).take(index) for values in windows),
            *(results[field.name].take(index) for field in self.task.columns()),
        ]
        return pa.Table.from_arrays(columns, schema=self.schema)

    def _infer(self, positions: list[int], chunk: _Chunk, done: list[_Result], errors: dict[int, str]) -> None:
        """Run one batch; on failure split it, so one bad document costs only its own row."""
        encoded = chunk.encoded
        doc_ids = [chunk.valid[encoded.text_of[p]] for p in positions]
        try:
            batch = self.task.collate(
                [encoded.ids[p] for p in positions],
                [_text(chunk.docs[d]) for d in doc_ids],
                [encoded.offsets[p] for p in positions] if encoded.offsets else None,
                [encoded.special[p] for p in positions] if encoded.special else None,
                doc_ids=tuple(chunk.docs[d].id for d in doc_ids),
            )
            columns = self.task.infer_columns(batch)
        except Exception as exc:  # a model failure becomes rows, unless the device itself broke
            if _sticky(exc, batch_size=len(positions)):
                raise DeviceFailed(f"the device failed, every later batch would: {type(exc).__name__}: {exc}") from exc
            if self.task.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(positions) == 1:
                errors[doc_ids[0]] = f"model failed: {type(exc).__name__}: {exc}"[:500]
                return
            half = len(positions) // 2
            for part in (positions[:half], positions[half:]):
                self._infer(part, chunk, done, errors)
            return
        done.append((positions, columns))


class ShardCancelled(Exception):
    """The job that asked for the shard is gone; its part is not written."""


class DeviceFailed(Exception):
    """The worker's device is damaged (a CUDA error, an OOM with one document): every later
    batch on it fails too, so the shard fails rather than turn into `model failed` rows, and
    the worker process ends (job/pool.py) so that the shard is retried on a fresh one."""


def _sticky(exc: Exception, *, batch_size: int) -> bool:
    """An error after which the device gives nothing right: a CUDA error (a device-side assert
    poisons the context for good), or running out of memory on a batch of one document."""
    if "CUDA error" in str(exc) or type(exc).__name__ == "AcceleratorError":
        return True
    return isinstance(exc, torch.OutOfMemoryError) and batch_size == 1


def _text(doc: Document) -> str:
    """The text of a document without an error: a reader gives each document one or the other."""
    if doc.text is None:
        raise ValueError(f"document {doc.source!r} has neither a text nor an error")
    return doc.text


def _to_arrow(values: Any, kind: pa.DataType) -> pa.Array:
    if isinstance(values, np.ndarray) and pa.types.is_fixed_size_list(kind):
        flat = pa.array(np.ascontiguousarray(values).reshape(-1), kind.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, kind.list_size)
    return pa.array(values, kind)


def _reason(error: str) -> str:
    """The kind of an error, for the manifest's tally: errors read "kind: detail"."""
    return error.split(":", 1)[0]
