"""The driver: plan shards, skip finished ones, feed a pool of workers, write the manifest.

Exit codes: 0 every document has a row; 1 some shards failed (rerun resumes them);
2 the input was refused before anything ran.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from job import urls
from job.config import WorkerConfig
from job.corpus import CorpusError, Shard, plan_shards, scan
from job.output import Output, part_name

PROGRESS_PREFIX = "raybake-progress"
SPEC_FILE = "spec.json"
MANIFEST_FILE = "manifest.json"
# In-flight shards per worker: one computing, one being read and tokenized.
IN_FLIGHT = 2


@dataclass(frozen=True)
class RunConfig:
    worker: WorkerConfig
    shard_size: int | None  # None: auto_shard_size of the corpus
    workers: int | None
    cpus_per_worker: float | None
    retries: int
    check_only: bool


def auto_shard_size(documents: int) -> int:
    """Shards must far outnumber workers (the last shards decide when a run ends) yet stay big
    enough to sort by length and to amortise a part file each. A function of the corpus alone,
    so a rerun, even on a cluster of another size, plans the same shards and resumes."""
    return min(1024, max(32, -(-documents // 64)))


def log(message: str) -> None:
    print(f"raybake: {urls.shown(message)}", flush=True)


def run(config: RunConfig) -> int:
    started = time.time()
    wc = config.worker
    urls.hide(wc.corpus, wc.output)
    try:
        _, files = scan(wc.corpus, wc.fields)
    except CorpusError as exc:
        log(f"error: {exc}")
        return 2
    for f in files:
        if f.broken:
            log(f"warning: {f.rel!r} cannot be read to its end ({f.broken}); the rest of it is one error row")
    shard_size = config.shard_size or auto_shard_size(sum(f.records for f in files))
    config = dataclasses.replace(config, shard_size=shard_size)
    shards = plan_shards(files, shard_size)
    total_docs = sum(s.size for s in shards)
    log(f"corpus {urls.redact(wc.corpus)!r}: {total_docs} documents in {len(files)} file(s), {len(shards)} shard(s)")
    if config.check_only:
        return 0

    output = Output(wc.output)
    spec = _spec(config, files_count=len(files), documents=total_docs)
    previous = output.read_json(SPEC_FILE)
    if previous is not None and previous != spec:
        changed = sorted(k for k in spec.keys() | previous.keys() if spec.get(k) != previous.get(k))
        log(
            f"error: {wc.output!r} holds results of a different job (changed: {', '.join(changed)}); "
            "choose another --output or delete it"
        )
        return 2
    output.write_json(SPEC_FILE, spec)

    done = output.finished()
    todo = [s for s in shards if part_name(s) not in done]
    if len(todo) < len(shards):
        log(f"resuming: {len(shards) - len(todo)} shard(s) already done, {len(todo)} to go")

    _check_image()
    pool = _process(config, todo, total_docs - sum(s.size for s in todo), total_docs) if todo else PoolRun()
    manifest = build_manifest(output, shards, spec, started=started, pool=pool, resumed=len(shards) - len(todo))
    output.write_json(MANIFEST_FILE, manifest)
    counts = manifest["counts"]
    log(
        f"done: {counts['ok']} ok, {counts['error']} error, {counts['missing']} missing "
        f"of {counts['documents']} documents -> {wc.output}/{MANIFEST_FILE}"
    )
    if pool.failed:
        for shard_id, reason in pool.failed.items():
            log(f"shard {shard_id} failed: {reason}")
        log(f"error: {len(pool.failed)} shard(s) failed; run the same command again to retry only those")
        return 1
    return 0


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


def _process(config: RunConfig, todo: list[Shard], already: int, total: int) -> PoolRun:
    import ray

    ray.init(log_to_driver=True, logging_level="WARNING")
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    use_gpu = gpus > 0 and config.worker.options.device in ("auto", "cuda")
    # A worker must fit on one node: on a multi-node cluster the total would ask for more CPUs
    # than any node has, and the workers would never start.
    node_cpus = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=1)
    cpus_per_worker = config.cpus_per_worker or (1 if use_gpu else min(4, max(1, int(node_cpus))))
    count = config.workers or (gpus if use_gpu else max(1, int(resources.get("CPU", 1) // cpus_per_worker)))
    count = min(count, len(todo))
    threads = max(1, int(cpus_per_worker))
    wc = dataclasses.replace(config.worker, threads=threads)
    actor_class = ray.remote(PoolWorker).options(
        num_gpus=1 if use_gpu else 0,
        num_cpus=cpus_per_worker,
        # A killed worker process comes back and its in-flight shards are retried on it.
        max_restarts=config.retries,
        max_task_retries=config.retries,
        max_concurrency=IN_FLIGHT,
    )
    log(f"starting {count} worker(s): {'1 GPU' if use_gpu else f'{cpus_per_worker} CPU'} each")
    actors = [actor_class.remote(wc) for _ in range(count)]
    infos = ray.get([a.info.remote() for a in actors])
    ready_at, ready_clock = time.time(), time.perf_counter()
    for info in infos:
        log(
            f"worker on {info['host']} (pid {info['pid']}): {info['device']} {info['dtype']}, "
            f"model loaded in {info['load_seconds']}s"
        )

    queue = collections.deque(todo)
    attempts: collections.Counter[str] = collections.Counter()
    pending: dict[Any, tuple[Any, Shard]] = {}
    failed: dict[str, str] = {}
    progress = Progress(total=total, done=already, shards_total=len(todo))
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
            _retry_or_fail(shard, str(exc).splitlines()[0], queue, attempts, failed, config.retries)
            if not alive:
                failed.update({s.id: "no worker left" for s in queue})
                queue.clear()
        except ray.exceptions.RayTaskError as exc:
            cause = str(exc.cause if exc.cause else exc).splitlines()[0][:300]
            _retry_or_fail(shard, cause, queue, attempts, failed, config.retries)
        else:
            progress.advance(stats["documents"])
        top_up()
    progress.report(force=True)
    return PoolRun(infos, failed, ready_at, round(time.perf_counter() - ready_clock, 4))


def _check_image() -> None:
    """The client says which image it built; a cluster running another one gives other results."""
    expected, actual = os.environ.get("RAYBAKE_EXPECTED_IMAGE"), os.environ.get("RAYBAKE_IMAGE")
    if expected and expected != actual:
        banner = "!" * 78
        log(
            f"{banner}\nraybake: WARNING: this job runs in image {actual!r}, "
            f"but the client expected {expected!r}\nraybake: {banner}"
        )


def _retry_or_fail(shard: Shard, reason: str, queue, attempts, failed, retries: int) -> None:
    if attempts[shard.id] <= retries:
        log(f"shard {shard.index} ({shard.id}) failed, retrying: {reason}")
        queue.append(shard)
    else:
        failed[shard.id] = reason


class Progress:
    """Progress lines on stdout; the client turns them into a bar, a human reads them as they are."""

    def __init__(self, *, total: int, done: int, shards_total: int) -> None:
        self.total, self.done, self.start_done = total, done, done
        self.shards_total, self.shards_done = shards_total, 0
        self.started = self.last = time.monotonic()
        self.reported = -1

    def advance(self, documents: int) -> None:
        self.done += documents
        self.shards_done += 1
        self.report()

    def report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if (not force and now - self.last < 1.0) or self.reported == self.done:
            return
        self.last, self.reported = now, self.done
        rate = (self.done - self.start_done) / max(now - self.started, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        print(
            f"{PROGRESS_PREFIX} docs={self.done}/{self.total} shards={self.shards_done}/{self.shards_total} "
            f"rate={rate:.1f}/s eta={eta:.0f}s",
            flush=True,
        )


def _spec(config: RunConfig, *, files_count: int, documents: int) -> dict[str, Any]:
    """What determines the results: a rerun into the same output must match it exactly."""
    wc = config.worker
    return {
        "corpus": urls.redact(wc.corpus),
        "files": files_count,
        "documents": documents,
        "task": wc.task,
        "model": wc.model,
        "options": asdict(wc.options),
        "fields": asdict(wc.fields),
        "shard_size": config.shard_size,
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
) -> dict[str, Any]:
    finished = output.finished()
    planned = {part_name(s) for s in shards}
    parts, totals, reasons = [], collections.Counter(), collections.Counter()
    missing = 0
    ids = []
    for shard in shards:
        name = part_name(shard)
        if name not in finished:
            missing += shard.size
            continue
        stats, part_ids = output.part_summary(name)
        parts.append({"file": f"parts/{name}", "rows": stats["documents"], "shard": shard.id})
        ids.append(part_ids)
        for key in ("documents", "ok", "error", "truncated", "real_tokens", "padded_tokens"):
            totals[key] += stats[key]
        reasons.update(stats["errors_by_reason"])
        totals["compute_seconds"] += stats["compute_seconds"]
    all_ids = pa.chunked_array(ids, type=pa.string())
    wall = time.time() - started
    return {
        "status": "complete" if missing == 0 else "incomplete",
        "spec": spec,
        "counts": {
            "documents": spec["documents"],
            "ok": totals["ok"],
            "error": totals["error"],
            "missing": missing,
            "truncated": totals["truncated"],
            # Rows whose --id-field value an earlier row already has: both rows are kept
            # (`source` tells them apart), and this says the ids are not keys.
            "duplicate_ids": len(all_ids) - pc.count_distinct(all_ids).as_py(),
        },
        "errors_by_reason": dict(reasons),
        "shards": {"total": len(shards), "resumed": resumed, "failed": pool.failed},
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
            "compute_seconds": round(totals["compute_seconds"], 3),
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
