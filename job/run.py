"""The driver: plan shards, skip finished ones, feed a pool of workers, write the manifest.

Exit codes: 0 every document has a row; 1 some shards failed (rerun resumes them);
2 the input was refused before anything ran.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from job import urls
from job.config import WorkerConfig
from job.corpus import CorpusError, CorpusFile, Shard, auto_split_bytes, check, plan_shards, scan
from job.output import Output, part_name

PROGRESS_PREFIX = "raybake-progress"
SPEC_FILE = "spec.json"
MANIFEST_FILE = "manifest.json"
# In-flight shards per worker: one computing, the next one queued so that no worker idles
# between shards (within a shard, a reader thread keeps the model fed).
IN_FLIGHT = 2
# Threads of one CPU worker (CPUs it asks Ray for); a node gets as many such workers as fit.
# Measured with `invoke bench` on a 2-core machine: see docs/performance.md.
DEFAULT_CPU_WORKER_THREADS = 1


@dataclass(frozen=True)
class RunConfig:
    worker: WorkerConfig
    split_bytes: int | None  # None: auto_split_bytes of the corpus
    workers: int | None
    cpus_per_worker: float | None
    retries: int
    check_only: bool


def log(message: str) -> None:
    print(f"raybake: {urls.shown(message)}", flush=True)


def plan(config: RunConfig) -> tuple[list[CorpusFile], list[Shard], int, float]:
    """(files, shards, split bytes, seconds): from the listing and Parquet footers only."""
    clock = time.perf_counter()
    wc = config.worker
    fs, files = scan(wc.corpus)
    check(fs, files, wc.fields)
    split = config.split_bytes or auto_split_bytes(files)
    shards = plan_shards(files, split)
    return files, shards, split, time.perf_counter() - clock


def run(config: RunConfig) -> int:
    started = time.time()
    wc = config.worker
    urls.hide(wc.corpus, wc.output)
    # The workers start (and load the model) while the driver lists and plans the corpus.
    pool = None if config.check_only else Pool.start(config)
    try:
        files, shards, split, plan_seconds = plan(config)
    except CorpusError as exc:
        log(f"error: {exc}")
        return 2
    except PermissionError as exc:
        # An object store that refuses the credentials: one line, before any shard is read.
        reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
        log(f"error: access to corpus {urls.redact(wc.corpus)!r} refused ({reason})")
        return 2
    gzipped = [f for f in files if f.gzip]
    if gzipped:
        log(
            f"note: {len(gzipped)} gzip file(s) are read whole, one worker each (gzip cannot be split); "
            "a corpus of many smaller files, or uncompressed JSONL, spreads over more workers"
        )
    total_bytes = sum(f.size for f in files)
    log(
        f"corpus {urls.redact(wc.corpus)!r}: {len(files)} file(s), {total_bytes} bytes, {len(shards)} shard(s) "
        f"of up to {split} bytes, planned in {plan_seconds:.2f}s"
    )
    if config.check_only:
        return 0
    config = dataclasses.replace(config, split_bytes=split)

    output = Output(wc.output)
    spec = _spec(config, files)
    previous = output.read_json(SPEC_FILE)
    if previous is not None and previous != spec:
        log(f"error: {_difference(wc.output, previous, spec)}")
        return 2
    output.write_json(SPEC_FILE, spec)

    done = output.finished()
    todo = [s for s in shards if part_name(s) not in done]
    if len(todo) < len(shards):
        log(f"resuming: {len(shards) - len(todo)} shard(s) already done, {len(todo)} to go")

    _check_image()
    assert pool is not None
    result = pool.run(todo, done_bytes=total_bytes - sum(s.bytes for s in todo), total_bytes=total_bytes)
    manifest = build_manifest(
        output, shards, spec, started=started, pool=result, resumed=len(shards) - len(todo), plan_seconds=plan_seconds
    )
    output.write_json(MANIFEST_FILE, manifest)
    counts = manifest["counts"]
    log(
        f"done: {counts['ok']} ok, {counts['error']} error of {counts['documents']} documents read, "
        f"{manifest['shards']['missing']} shard(s) missing -> {wc.output}/{MANIFEST_FILE}"
    )
    if result.failed:
        for shard_id, reason in result.failed.items():
            log(f"shard {shard_id} failed: {reason}")
        log(f"error: {len(result.failed)} shard(s) failed; run the same command again to retry only those")
        return 1
    return 0


def _difference(output: str, previous: dict[str, Any], spec: dict[str, Any]) -> str:
    """Why a rerun into `output` is refused: the corpus changed (named), or the job did."""
    before = {rel: (size, version) for rel, size, version in previous.get("files", [])}
    after = {rel: (size, version) for rel, size, version in spec["files"]}
    changed = sorted(rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel))
    if changed and all(previous.get(k) == spec.get(k) for k in spec if k != "files"):
        return (
            f"the corpus changed since {output!r} was started ({len(changed)} file(s) added, removed or modified: "
            f"{', '.join(map(repr, changed[:10]))}{' ...' if len(changed) > 10 else ''}); "
            "its results would mix two corpora: choose another --output or delete it"
        )
    keys = sorted(k for k in spec.keys() | previous.keys() if spec.get(k) != previous.get(k))
    what = f"{output!r} holds results of a different job (changed: {', '.join(keys)})"
    return f"{what}; choose another --output or delete it"


class PoolWorker:
    """The Ray actor around ShardWorker: torch and transformers are imported in the worker
    process only, so the driver starts without them."""

    def __init__(self, config: WorkerConfig) -> None:
        started = time.perf_counter()
        from job.worker import ShardWorker

        self.worker = ShardWorker(config, started=started)

    def info(self) -> dict[str, Any]:
        return self.worker.info()

    def process(self, shard: Shard) -> dict[str, Any]:
        return self.worker.process(shard)


@dataclass
class PoolRun:
    """What the worker pool did: who worked, what failed, and when processing ran."""

    workers: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    ready_at: float | None = None  # epoch seconds: every worker had its model loaded
    processing_seconds: float | None = None  # from ready to the last shard: throughput's clock


class Pool:
    """The workers: started before the plan exists, so their model load overlaps planning."""

    def __init__(self, config: RunConfig, actors: list[Any], use_gpu: bool, cpus: float) -> None:
        self.config, self.actors, self.use_gpu, self.cpus = config, actors, use_gpu, cpus
        self.infos = [a.info.remote() for a in actors]

    @classmethod
    def start(cls, config: RunConfig) -> Pool:
        import ray

        ray.init(log_to_driver=True, logging_level=logging.WARNING)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and config.worker.options.device in ("auto", "cuda")
        # A worker must fit on one node: on a multi-node cluster the total would ask for more CPUs
        # than any node has, and the workers would never start.
        node_cpus = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=1)
        cpus = config.cpus_per_worker or (1 if use_gpu else default_cpus_per_worker(node_cpus))
        count = config.workers or (gpus if use_gpu else max(1, int(resources.get("CPU", 1) // cpus)))
        wc = dataclasses.replace(config.worker, threads=max(1, int(cpus)))
        actor_class = ray.remote(PoolWorker).options(
            num_gpus=1 if use_gpu else 0,
            num_cpus=cpus,
            # A killed worker process comes back and its in-flight shards are retried on it.
            max_restarts=config.retries,
            max_task_retries=config.retries,
            max_concurrency=IN_FLIGHT,
        )
        return cls(config, [actor_class.remote(wc) for _ in range(count)], use_gpu, cpus)

    def run(self, todo: list[Shard], *, done_bytes: int, total_bytes: int) -> PoolRun:
        import ray

        if not todo:
            for actor in self.actors:
                ray.kill(actor)
            return PoolRun()
        # More workers than shards: the spare ones would only hold memory.
        for actor in self.actors[len(todo) :]:
            ray.kill(actor)
        actors, self.infos = self.actors[: len(todo)], self.infos[: len(todo)]
        log(f"starting {len(actors)} worker(s): {'1 GPU' if self.use_gpu else f'{self.cpus} CPU'} each")
        infos = ray.get(self.infos)
        ready_at, ready_clock = time.time(), time.perf_counter()
        for info in infos:
            log(
                f"worker on {info['host']} (pid {info['pid']}): {info['device']} {info['dtype']}, "
                f"model loaded in {info['load_seconds']}s"
            )
        retries = self.config.retries
        queue = collections.deque(todo)
        attempts: collections.Counter[str] = collections.Counter()
        pending: dict[Any, tuple[Any, Shard]] = {}
        failed: dict[str, str] = {}
        timers: list[collections.Counter[str]] = [collections.Counter() for _ in actors]
        peaks = [0.0 for _ in actors]
        progress = Progress(total_bytes=total_bytes, done_bytes=done_bytes, shards_total=len(todo))
        progress.report(force=True)  # the starting point: a bar's rate counts from here

        def top_up() -> None:
            # Breadth first: every idle worker gets a shard before any gets a second. A queued second
            # shard cannot move to a worker that frees up later, so near the end, when there are no
            # more shards than workers, nobody gets one.
            for depth in range(1, IN_FLIGHT + 1):
                for index in sorted(alive):
                    busy = sum(1 for a, _ in pending.values() if a is actors[index])
                    if busy >= depth or not queue or (depth > 1 and len(queue) <= len(alive)):
                        continue
                    shard = queue.popleft()
                    attempts[shard.id] += 1
                    pending[actors[index].process.remote(shard)] = (actors[index], shard)

        alive = set(range(len(actors)))
        top_up()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            actor, shard = pending.pop(ready[0])
            try:
                stats = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:
                # Restarts exhausted: this worker is gone for good; its shards go to the others.
                alive.discard(actors.index(actor))
                _retry_or_fail(shard, str(exc).splitlines()[0], queue, attempts, failed, retries)
                if not alive:
                    failed.update({s.id: "no worker left" for s in queue})
                    queue.clear()
            except ray.exceptions.RayTaskError as exc:
                cause = str(exc.cause if exc.cause else exc).splitlines()[0][:300]
                _retry_or_fail(shard, cause, queue, attempts, failed, retries)
            else:
                spent = timers[actors.index(actor)]
                spent.update({k: v for k, v in stats.items() if k.endswith("_seconds")})
                peaks[actors.index(actor)] = max(peaks[actors.index(actor)], stats["peak_rss_mib"])
                progress.advance(shard_bytes=shard.bytes, documents=stats["documents"])
            top_up()
        progress.report(force=True)
        for info, spent, peak in zip(infos, timers, peaks, strict=True):
            # Where each worker's time went; `wait`: its model waited for input.
            info["seconds"] = {k.removesuffix("_seconds"): round(v, 3) for k, v in sorted(spent.items())}
            info["peak_rss_mib"] = peak
        return PoolRun(infos, failed, ready_at, round(time.perf_counter() - ready_clock, 4))


def default_cpus_per_worker(node_cpus: float) -> int:
    """CPUs per CPU worker: see DEFAULT_CPU_WORKER_THREADS."""
    return max(1, min(DEFAULT_CPU_WORKER_THREADS, int(node_cpus)))


def _check_image() -> None:
    """The client says which image it built; a cluster running another one gives other results."""
    expected, actual = os.environ.get("RAYBAKE_EXPECTED_IMAGE"), os.environ.get("RAYBAKE_IMAGE")
    if expected and expected != actual:
        banner = "!" * 78
        log(
            f"{banner}\nraybake: WARNING: this job runs in image {actual!r}, "
            f"but the client expected {expected!r}\nraybake: {banner}"
        )


def _retry_or_fail(
    shard: Shard,
    reason: str,
    queue: collections.deque[Shard],
    attempts: collections.Counter[str],
    failed: dict[str, str],
    retries: int,
) -> None:
    if attempts[shard.id] <= retries:
        log(f"shard {shard.index} ({shard.id}) failed, retrying: {reason}")
        queue.append(shard)
    else:
        failed[shard.id] = reason


class Progress:
    """Progress lines on stdout; the client turns them into a bar, a human reads them as they are.

    The one format both sides share (raybake/follow.py parses it):
        raybake-progress bytes=DONE/TOTAL docs=D shards=S/N rate=R/s eta=Es
    Bytes are of the corpus (known from the plan, before any document is counted); docs are
    the documents read so far; rate is documents per second; eta comes from the byte rate.
    """

    def __init__(self, *, total_bytes: int, done_bytes: int, shards_total: int) -> None:
        self.total, self.done, self.start_done = total_bytes, done_bytes, done_bytes
        self.docs, self.shards_total, self.shards_done = 0, shards_total, 0
        self.started = self.last = time.monotonic()
        self.reported = -1

    def advance(self, *, shard_bytes: int, documents: int) -> None:
        self.done += shard_bytes
        self.docs += documents
        self.shards_done += 1
        self.report()

    def report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if (not force and now - self.last < 1.0) or self.reported == self.done:
            return
        self.last, self.reported = now, self.done
        elapsed = max(now - self.started, 1e-9)
        byte_rate = (self.done - self.start_done) / elapsed
        eta = (self.total - self.done) / byte_rate if byte_rate > 0 else 0.0
        print(
            f"{PROGRESS_PREFIX} bytes={self.done}/{self.total} docs={self.docs} "
            f"shards={self.shards_done}/{self.shards_total} rate={self.docs / elapsed:.1f}/s eta={eta:.0f}s",
            flush=True,
        )


def _spec(config: RunConfig, files: list[CorpusFile]) -> dict[str, Any]:
    """What determines the results: a rerun into the same output must match it exactly.
    Each file's size and version (etag or mtime) say whether the corpus is still the same."""
    wc = config.worker
    return {
        "corpus": urls.redact(wc.corpus),
        "files": [[f.rel, f.size, f.version] for f in files],
        "task": wc.task,
        "model": wc.model,
        "options": asdict(wc.options),
        "fields": asdict(wc.fields),
        "split_bytes": config.split_bytes,
        "max_record_bytes": wc.max_record_bytes,
    }


def _versions() -> dict[str, str]:
    import pyarrow
    import ray
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "ray": ray.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pyarrow": pyarrow.__version__,
    }


def build_manifest(
    output: Output,
    shards: list[Shard],
    spec: dict[str, Any],
    *,
    started: float,
    pool: PoolRun,
    resumed: int,
    plan_seconds: float | None = None,
) -> dict[str, Any]:
    """The run's account, reconciled from the parts' footers: the documents are those the workers
    read (nobody counted them before), and a shard without a part is missing as a whole."""
    # Here, not at the top: `python -m job --check`, the client's pre-submit check, starts faster.
    import pyarrow as pa
    import pyarrow.compute as pc

    finished = output.finished()
    planned = {part_name(s) for s in shards}
    parts: list[dict[str, Any]] = []
    totals: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    missing_shards, missing_bytes = 0, 0
    ids = []
    for shard in shards:
        name = part_name(shard)
        if name not in finished:
            missing_shards += 1
            missing_bytes += shard.bytes
            continue
        stats, part_ids = output.part_summary(name)
        parts.append({"file": f"parts/{name}", "rows": stats["documents"], "shard": shard.id})
        ids.append(part_ids)
        for key in ("documents", "ok", "error", "truncated", "real_tokens", "padded_tokens", "bytes_read"):
            totals[key] += stats[key]
        reasons.update(stats["errors_by_reason"])
        for key in ("read", "tokenize", "compute", "write", "wait"):
            totals[f"{key}_seconds"] += stats[f"{key}_seconds"]
    all_ids = pa.chunked_array(ids, type=pa.string())
    wall = time.time() - started
    corpus_bytes = sum(size for _, size, _ in spec["files"])
    return {
        "status": "complete" if missing_shards == 0 else "incomplete",
        "spec": spec,
        "counts": {
            "documents": totals["documents"],
            "ok": totals["ok"],
            "error": totals["error"],
            # Documents of unfinished shards were never read: nobody knows how many there are.
            "missing": 0 if missing_shards == 0 else None,
            "truncated": totals["truncated"],
            # Rows whose --id-field value an earlier row already has: both rows are kept
            # (`source` tells them apart), and this says the ids are not keys.
            "duplicate_ids": len(all_ids) - pc.count_distinct(all_ids).as_py(),
        },
        "errors_by_reason": dict(reasons),
        "shards": {"total": len(shards), "resumed": resumed, "failed": pool.failed, "missing": missing_shards},
        "bytes": {
            "corpus": corpus_bytes,
            "missing": missing_bytes,
            "read": totals["bytes_read"],
            # Bytes the readers read over the bytes of the shards they finished: 1.0 is each byte once.
            "read_amplification": round(totals["bytes_read"] / (corpus_bytes - missing_bytes), 4)
            if corpus_bytes > missing_bytes
            else None,
        },
        "parts": parts,
        "stale_parts": sorted(finished - planned),
        "tokens": {
            "real": totals["real_tokens"],
            "padded": totals["padded_tokens"],
            "padding_efficiency": round(totals["real_tokens"] / totals["padded_tokens"], 4)
            if totals["padded_tokens"]
            else None,
        },
        "timings": {
            "started": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
            "finished": dt.datetime.now(dt.UTC).isoformat(),
            "wall_seconds": round(wall, 3),
            "plan_seconds": round(plan_seconds, 3) if plan_seconds is not None else None,
            # Summed over shards; per worker in workers[].seconds. `wait`: the model waited for input.
            **{k: round(totals[k], 3) for k in sorted(totals) if k.endswith("_seconds")},
            "workers_ready": pool.ready_at,
            "processing_seconds": pool.processing_seconds,
        },
        "workers": pool.workers,
        "model": {
            "name": spec["model"],
            "path": pool.workers[0]["model_path"] if pool.workers else None,
            "revision": pool.workers[0]["revision"] if pool.workers else None,
        },
        "versions": _versions(),
        "raybake_version": os.environ.get("RAYBAKE_VERSION"),
        "git_sha": os.environ.get("RAYBAKE_GIT_SHA"),
        "image": os.environ.get("RAYBAKE_IMAGE"),
        "expected_image": os.environ.get("RAYBAKE_EXPECTED_IMAGE"),
        "argv": sys.argv,
    }
