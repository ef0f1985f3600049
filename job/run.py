"""The driver: plan shards, skip finished ones, feed a pool of workers, write the manifest.

Exit codes: 0 every document has a row; 1 some shards failed (rerun resumes them);
2 the input was refused before anything ran; 3 the store could not be reached or refused the
credentials. A failure ends with one line, `raybake: error: ...` (job/failure.py).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from job import credentials, failure, urls
from job.config import SPEC_VARIABLE, WorkerConfig
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
# The worker processes' environment, beside the job's. glibc gives each thread that allocates
# (reader, model, tokenizer pool, Ray's own) an arena of its own, up to 8 per core, and memory
# freed in one cannot serve another: two arenas keep peak RSS flat (1M short documents in 1 MiB
# shards on the 2-core VM: 682 MiB, against 748 MiB with glibc's default and 681 MiB for 100k).
WORKER_ENV = {"MALLOC_ARENA_MAX": "2"}
# Warm workers (--keep-warm-seconds) are detached named actors here, outside any job's namespace.
WARM_NAMESPACE = "raybake-warm"
RETIRE_WAIT_S = 10.0
WAIT_STEP_S = 1.0


@dataclass(frozen=True)
class RunConfig:
    worker: WorkerConfig
    split_bytes: int | None  # None: auto_split_bytes of the corpus
    workers: int | None
    cpus_per_worker: float | None
    retries: int
    check_only: bool
    # Workers stay this long after the job for the next one of the same model (0: they end with it).
    keep_warm_s: float = 0
    # The command as the manifest shows it: options decoded, URL credentials masked.
    command: str = ""


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
        output,
        shards,
        spec,
        started=started,
        pool=result,
        resumed=len(shards) - len(todo),
        plan_seconds=plan_seconds,
        command=config.command,
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
        code, reason = failure.explain_text("\n".join(result.failed.values()))
        log(f"error: {len(result.failed)} shard(s) failed: {reason}; run the same command again to retry only those")
        return code
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
    process only, so the driver starts without them.

    A warm one (`keep_warm_s` > 0) outlives its job and serves the next job of the same model
    settings and runtime env without loading again; idle for `keep_warm_s`, it ends itself."""

    def __init__(self, config: WorkerConfig, keep_warm_s: float = 0) -> None:
        started = time.perf_counter()
        # The fast tokenizer's thread pool, made at its first batch: as wide as this worker's CPUs,
        # not the whole machine's (Ray sets OMP_NUM_THREADS alike, for torch).
        os.environ.setdefault("RAYON_NUM_THREADS", str(config.threads))
        credentials.load()
        from job.worker import ShardWorker

        self.worker = ShardWorker(config, started=started)
        self.keep_warm_s, self.loaded_at = keep_warm_s, time.time()
        self.busy, self.jobs, self.last_used = 0, 0, time.monotonic()
        self.lock = threading.Lock()
        if keep_warm_s > 0:
            threading.Thread(target=self._expire, name="keep-warm", daemon=True).start()

    def info(self, config: WorkerConfig) -> dict[str, Any]:
        """This worker as the job `config` gets it (its token budget, say, is that job's)."""
        with self.lock:
            self._in_service()
            self.jobs, self.last_used = self.jobs + 1, time.monotonic()
        # `warm`: loaded for an earlier job, and this one did not wait for it.
        return {**self.worker.info(config), "warm": self.jobs > 1, "loaded_at": self.loaded_at}

    def process(self, shard: Shard, config: WorkerConfig) -> dict[str, Any]:
        import ray

        with self.lock:
            self._in_service()
            self.busy += 1
        try:
            return self.worker.process(shard, config, cancelled=ray.get_runtime_context().is_canceled)
        finally:
            with self.lock:
                self.busy, self.last_used = self.busy - 1, time.monotonic()

    def retire(self, *, idle_s: float = 0) -> bool:
        """End this worker if it has had nothing to do for `idle_s` (a job that is using it is
        never cut short); True if it ends."""
        with self.lock:
            if self.busy or time.monotonic() - self.last_used < idle_s:
                return False
            self.busy = -1  # ending: nothing more starts here
        import ray

        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
        return True

    def _in_service(self) -> None:
        if self.busy < 0:
            raise RuntimeError("this warm worker is ending (idle too long); the job starts another")

    def _expire(self) -> None:
        while not self.retire(idle_s=self.keep_warm_s):
            time.sleep(min(self.keep_warm_s, 5.0))


@dataclass
class PoolRun:
    """What the worker pool did: who worked, what failed, and when processing ran."""

    workers: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    ready_at: float | None = None  # epoch seconds: every worker had its model loaded
    processing_seconds: float | None = None  # from ready to the last shard: throughput's clock


class Pool:
    """The workers: started before the plan exists, so their model load overlaps planning."""

    def __init__(self, config: RunConfig, actors: list[Any], use_gpu: bool, cpus: float, actor_class: Any) -> None:
        self.config, self.actors, self.use_gpu, self.cpus = config, actors, use_gpu, cpus
        self.actor_class = actor_class
        self.infos = [a.info.remote(config.worker) for a in actors]

    def ready(self, actors: list[Any]) -> list[dict[str, Any]]:
        """Each worker's info once its model is loaded. A warm worker that ended itself between
        the lookup and now (it had been idle for exactly its time) is replaced by a new one."""
        import ray

        infos = []
        for index, ref in enumerate(self.infos[: len(actors)]):
            try:
                infos.append(ray.get(ref))
            except ray.exceptions.RayError:
                if not self.config.keep_warm_s:
                    raise
                actors[index] = self.actor_class.remote(self.config.worker)
                infos.append(ray.get(actors[index].info.remote(self.config.worker)))
        return infos

    @classmethod
    def start(cls, config: RunConfig) -> Pool:
        import ray

        ray.init(log_to_driver=True, logging_level=logging.WARNING)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and config.worker.options.device in ("auto", "cuda")
        # A worker must fit on one node: on a multi-node cluster the total would ask for more CPUs
        # than any node has, and the workers would never start.
        nodes = ray.nodes()
        node_cpus = max((n["Resources"].get("CPU", 0) for n in nodes if n["Alive"]), default=1)
        cpus = config.cpus_per_worker or (gpu_worker_cpus(nodes) if use_gpu else default_cpus_per_worker(node_cpus))
        count = config.workers or (gpus if use_gpu else max(1, int(resources.get("CPU", 1) // cpus)))
        wc = dataclasses.replace(config.worker, threads=max(1, int(cpus)))
        config = dataclasses.replace(config, worker=wc)
        options = {
            "num_gpus": 1 if use_gpu else 0,
            "num_cpus": cpus,
            # A killed worker process comes back and its in-flight shards are retried on it.
            "max_restarts": config.retries,
            "max_task_retries": config.retries,
            # Two shards of this job in flight, or of two jobs that share a warm worker.
            "max_concurrency": IN_FLIGHT * 2 if config.keep_warm_s else IN_FLIGHT,
            "runtime_env": {"env_vars": WORKER_ENV},
        }
        worker_class = ray.remote(PoolWorker)
        actor_class = worker_class.options(**options)
        pool = warm_pool_name(wc, use_gpu=use_gpu, cpus=cpus) if config.keep_warm_s else None
        retire_other_pools(keep=pool)
        if pool is None:
            return cls(config, [actor_class.remote(wc) for _ in range(count)], use_gpu, cpus, actor_class)
        warm = {"namespace": WARM_NAMESPACE, "lifetime": "detached", "get_if_exists": True}
        actors = [
            worker_class.options(**options, **warm, name=f"{pool}-{i}").remote(wc, config.keep_warm_s)
            for i in range(count)
        ]
        return cls(config, actors, use_gpu, cpus, actor_class)

    def drop(self, actors: list[Any]) -> None:
        """Workers this job does not need: ended, unless warm (they wait for the next job)."""
        import ray

        if not self.config.keep_warm_s:
            for actor in actors:
                ray.kill(actor)

    def run(self, todo: list[Shard], *, done_bytes: int, total_bytes: int) -> PoolRun:
        import ray

        if not todo:
            self.drop(self.actors)
            return PoolRun()
        # More workers than shards: the spare ones would only hold memory.
        self.drop(self.actors[len(todo) :])
        actors = self.actors[: len(todo)]
        log(f"starting {len(actors)} worker(s): {'1 GPU' if self.use_gpu else f'{self.cpus} CPU'} each")
        infos = self.ready(actors)
        ready_at, ready_clock = time.time(), time.perf_counter()
        for info in infos:
            loaded = (
                f"model warm (loaded {time.time() - info['loaded_at']:.0f}s ago)"
                if info["warm"]
                else f"model loaded in {info['load_seconds']}s"
            )
            log(f"worker on {info['host']} (pid {info['pid']}): {info['device']} {info['dtype']}, {loaded}")
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
                    pending[actors[index].process.remote(shard, self.config.worker)] = (actors[index], shard)

        alive = set(range(len(actors)))
        top_up()
        try:
            while pending:
                # In steps: Ray's SIGTERM handler (a stopped job) runs between them.
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_STEP_S)
                if not ready:
                    continue
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
        finally:
            # A stopped job leaves no shard running on a worker that outlives it (a warm one).
            for ref in pending:
                ray.cancel(ref)
        progress.report(force=True)
        for info, spent, peak in zip(infos, timers, peaks, strict=True):
            # Where each worker's time went; `wait`: its model waited for input.
            info["seconds"] = {k.removesuffix("_seconds"): round(v, 3) for k, v in sorted(spent.items())}
            info["peak_rss_mib"] = peak
        return PoolRun(infos, failed, ready_at, round(time.perf_counter() - ready_clock, 4))


def default_cpus_per_worker(node_cpus: float) -> int:
    """CPUs per CPU worker: see DEFAULT_CPU_WORKER_THREADS."""
    return max(1, min(DEFAULT_CPU_WORKER_THREADS, int(node_cpus)))


def gpu_worker_cpus(nodes: list[dict[str, Any]]) -> float:
    """CPUs per GPU worker: its node's CPUs over its GPUs, on the GPU node with the fewest each.
    A GPU outruns one tokenizer thread many times over; the fast tokenizer encodes a batch on as
    many threads as its worker has CPUs, and the rayjob default gives a GPU worker pod 8."""
    shares = [
        n["Resources"].get("CPU", 0) // n["Resources"]["GPU"]
        for n in nodes
        if n["Alive"] and n["Resources"].get("GPU", 0) >= 1
    ]
    return max(1, min(shares, default=1))


def warm_pool_name(worker: WorkerConfig, *, use_gpu: bool, cpus: float) -> str:
    """The name of the warm workers that can serve this job: the same model settings and shape,
    and the same runtime env (the job code's package, the environment), else they would run
    another job's code or settings."""
    import ray

    runtime_env = dict(ray.get_runtime_context().runtime_env)
    # The options are this job's, not the worker's: the next job of the same model has others.
    env_vars = {k: v for k, v in (runtime_env.get("env_vars") or {}).items() if k != SPEC_VARIABLE}
    what = {
        "runtime_env": {**runtime_env, "env_vars": env_vars},
        "model": repr(worker.model_settings()),
        "gpu": use_gpu,
        "cpus": cpus,
    }
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    return f"raybake-warm-{digest[:16]}"


def retire_other_pools(*, keep: str | None) -> None:
    """End the idle warm workers of pools other than `keep`: they hold CPUs (or GPUs) this job
    may need. One that is busy with another job is left to finish it."""
    import ray

    retiring: list[Any] = []
    for named in ray.util.list_named_actors(all_namespaces=True):
        if named["namespace"] != WARM_NAMESPACE or (keep and named["name"].startswith(f"{keep}-")):
            continue
        try:
            retiring.append(ray.get_actor(named["name"], namespace=WARM_NAMESPACE).retire.remote())
        except ValueError:  # ended meanwhile
            continue
    ray.wait(retiring, num_returns=len(retiring), timeout=RETIRE_WAIT_S)


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


def _versions() -> dict[str, str | None]:
    """What the job ran on. The packages' installed metadata, not their modules: the driver never
    imports torch or transformers (it starts seconds faster), and its workers run in the same
    image or environment."""
    from importlib import metadata

    def installed(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    packages = {name: installed(name) for name in ("ray", "torch", "transformers", "pyarrow")}
    return {"python": platform.python_version(), **packages}


def build_manifest(
    output: Output,
    shards: list[Shard],
    spec: dict[str, Any],
    *,
    started: float,
    pool: PoolRun,
    resumed: int,
    plan_seconds: float | None = None,
    command: str = "",
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
        "command": command,
    }
