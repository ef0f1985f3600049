"""The driver: plan shards, skip finished ones, feed a pool of workers, write the manifest.

Exit codes: 0 every document has a row; 1 some shards failed (rerun resumes them), or more
documents failed in the model than --max-error-rate allows; 2 the input was refused before
anything ran; 3 the store could not be reached or refused the credentials. A failure ends with
one line, `raybake: error: ...` (job/failure.py).
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
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from job import credentials, failure, urls
from job.config import SPEC_VARIABLE, WorkerConfig
from job.corpus import CorpusError, CorpusFile, Shard, auto_split_bytes, check, plan_shards, scan
from job.digest import digest
from job.output import DamagedPart, Output, part_name

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
# How long a stopped job's driver waits for the cancels of its in-flight shards to reach their
# workers: a driver that exits at once can take the cancel requests with it.
CANCEL_WAIT_S = 10.0
# A failed shard waits this long before its retry, doubled each attempt up to the cap: a store
# answering 503 SlowDown, or a worker restarting, gets time to recover.
RETRY_BACKOFF_S = 1.0
RETRY_BACKOFF_MAX_S = 30.0
# Ids counted at once in memory when the manifest checks their uniqueness; more are spread over
# hash buckets of about this many on local disk, so the count's memory does not grow with the
# corpus (50M ids: 378 MiB peak, under a 1 GiB address space; tests/unit/test_reconcile.py).
DISTINCT_BUCKET_ROWS = 2_000_000
DEFAULT_MAX_ERROR_RATE = 0.05
MODEL_FAILED = "model failed"
# How often a job says that its workers have not started yet.
WORKER_WAIT_NOTE_S = 30.0


class ModelNotLoaded(Exception):
    """A worker's model load failed, or it refused the model as asked (job.pipelines.base.ModelRefused):
    every worker would fail alike, so the job ends with the reason in one line."""


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
    # More `model failed` rows than this share of the documents read fails the job.
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
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
        return _run(config, pool, started)
    finally:
        if pool is not None:
            pool.release()


def _run(config: RunConfig, pool: Pool | None, started: float) -> int:
    wc = config.worker
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
    # Created exclusively: of two jobs started together on one output, the second finds the first's.
    if not output.create_json(SPEC_FILE, spec):
        previous = output.read_json(SPEC_FILE) or {}
        if _identity(previous) != _identity(spec):
            log(f"error: {_difference(wc.output, previous, spec)}")
            return 2

    done = _finished(output, shards)
    todo = [s for s in shards if part_name(s) not in done]
    if len(todo) < len(shards):
        log(f"resuming: {len(shards) - len(todo)} shard(s) already done, {len(todo)} to go")

    _check_image()
    assert pool is not None
    try:
        result = pool.run(todo, done_bytes=total_bytes - sum(s.bytes for s in todo), total_bytes=total_bytes)
    except ModelNotLoaded as exc:
        return last_word(str(exc), 2, pool)
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
        return last_word(
            f"{len(result.failed)} shard(s) failed: {reason}; the output is {manifest['status']}; "
            "run the same command again to retry only those",
            code,
            pool,
        )
    if manifest["status"] != "complete":
        missing = manifest["shards"]["missing"]
        return last_word(f"the output is {manifest['status']}: {missing} shard(s) missing", 1, pool)
    if why := too_many_errors(manifest, max_rate=config.max_error_rate):
        return last_word(why, 1, pool)
    return 0


def last_word(error: str, code: int, pool: Pool | None) -> int:
    """End the job with `error` as its last line, and `code`. Ray's message of a failed job holds
    only its last lines, which the client reads the error from (raybake/result.py): Ray's own
    forwarding of the workers' output (a dying worker's traceback) must not come after it."""
    import ray

    if pool is not None:
        pool.release()
    if ray.is_initialized():
        ray.shutdown()
    log(f"error: {error}")
    return code


def too_many_errors(manifest: dict[str, Any], *, max_rate: float) -> str | None:
    """Why the job fails for its `model failed` rows, or None: a model that fails on more than
    `max_rate` of the documents is broken (a damaged device, a wrong model), not unlucky."""
    documents, failed = manifest["counts"]["documents"], manifest["errors_by_reason"].get(MODEL_FAILED, 0)
    if not documents or failed / documents <= max_rate:
        return None
    return (
        f"{failed} of {documents} documents ({failed / documents:.1%}) failed in the model, over "
        f"--max-error-rate {max_rate!r}; see their `error` column, fix the cause and run again into a new --output"
    )


def _finished(output: Output, shards: list[Shard]) -> set[str]:
    """The parts of planned shards that are done. One that cannot be read (empty, cut short) is
    moved aside, so its shard is done again rather than make every rerun fail on it."""
    planned = {part_name(s) for s in shards}
    done = set()
    for name in sorted(output.finished() & planned):
        try:
            output.part_stats(name)
        except DamagedPart as exc:
            log(f"note: finished part {name} cannot be read ({exc}); moved to {output.move_aside(name)}, redoing it")
            continue
        done.add(name)
    return done


def _difference(output: str, previous: dict[str, Any], spec: dict[str, Any]) -> str:
    """Why a rerun into `output` is refused: the corpus changed (named), or the job did."""
    before = {rel: (size, version) for rel, size, version in previous.get("files", [])}
    after = {rel: (size, version) for rel, size, version in spec["files"]}
    changed = sorted(rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel))
    old, new = _identity(previous), _identity(spec)
    if changed and all(old.get(k) == new.get(k) for k in new if k != "files"):
        return (
            f"the corpus changed since {output!r} was started ({len(changed)} file(s) added, removed or modified: "
            f"{', '.join(map(repr, changed[:10]))}{' ...' if len(changed) > 10 else ''}); "
            "its results would mix two corpora: choose another --output or delete it"
        )
    keys = sorted(k for k in new.keys() | old.keys() if new.get(k) != old.get(k))
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
        from job.pipelines.base import ModelRefused
        from job.worker import ShardWorker

        self.refused: str | None = None
        try:
            self.worker = ShardWorker(config, started=started)
        except ModelRefused as exc:
            # Told to the driver by info(), which says it in one line: raised here, it would be
            # Ray's traceback of a failed actor in the job's log.
            self.refused = str(exc)
        self.keep_warm_s, self.loaded_at = keep_warm_s, time.time()
        self.busy, self.jobs, self.last_used = 0, 0, time.monotonic()
        # The jobs that hold this worker, from their start (while they plan, it is idle but
        # theirs) to their end: no other job retires it meanwhile.
        self.claims: set[str] = set()
        self.lock = threading.Lock()
        if keep_warm_s > 0:
            threading.Thread(target=self._expire, name="keep-warm", daemon=True).start()

    def info(self, config: WorkerConfig, job: str = "") -> dict[str, Any]:
        """This worker as the job `config` gets it (its token budget, say, is that job's),
        claimed by `job` until it calls `release`."""
        if self.refused is not None:
            return {"refused": self.refused}
        with self.lock:
            self._in_service()
            self.jobs, self.last_used = self.jobs + 1, time.monotonic()
            self.claims.add(job)
        # `warm`: loaded for an earlier job, and this one did not wait for it.
        return {**self.worker.info(config), "warm": self.jobs > 1, "loaded_at": self.loaded_at}

    def process(self, shard: Shard, config: WorkerConfig) -> dict[str, Any]:
        import ray

        from job.worker import DeviceFailed

        with self.lock:
            self._in_service()
            self.busy += 1
        try:
            return self.worker.process(shard, config, cancelled=ray.get_runtime_context().is_canceled)
        except DeviceFailed as exc:
            # Its device gives nothing right any more: the process ends, Ray starts a fresh one
            # (max_restarts) and runs this worker's shards again there (max_task_retries).
            print(f"raybake: worker pid {os.getpid()} ends: {exc}", flush=True)
            os._exit(1)
        finally:
            with self.lock:
                self.busy, self.last_used = self.busy - 1, time.monotonic()

    def release(self, job: str) -> None:
        """`job` has ended: it holds this worker no longer."""
        with self.lock:
            self.claims.discard(job)
            self.last_used = time.monotonic()

    def retire(self, *, idle_s: float = 0) -> bool:
        """End this worker if it has had nothing to do for `idle_s` and (asked by another job,
        `idle_s` 0) no job holds it: a job that is using it, or still planning, is never cut
        short. A claim lapses once the worker has been idle for its keep-warm time (its job's
        driver was killed). True if it ends."""
        with self.lock:
            idle = time.monotonic() - self.last_used
            if self.busy or idle < idle_s or (self.claims and idle < self.keep_warm_s):
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


# What Ray's error says of an actor whose constructor raised (the model could not be loaded, or
# the options do not fit it): every worker would fail alike, so the job stops in one line.
CREATION_FAILED = "error raised in its creation task"


def _last_line(exc: BaseException) -> str:
    """The constructor's own exception: the last line of Ray's traceback of it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else repr(exc)


@dataclass
class PoolRun:
    """What the worker pool did: who worked, what failed, and when processing ran."""

    workers: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    ready_at: float | None = None  # epoch seconds: every worker had its model loaded
    processing_seconds: float | None = None  # from ready to the last shard: throughput's clock


class Pool:
    """The workers: started before the plan exists, so their model load overlaps planning."""

    def __init__(
        self, config: RunConfig, actors: list[Any], use_gpu: bool, cpus: float, actor_class: Any, keep: str | None
    ) -> None:
        import ray

        self.config, self.actors, self.use_gpu, self.cpus = config, actors, use_gpu, cpus
        self.actor_class, self.keep = actor_class, keep
        self.job = ray.get_runtime_context().get_job_id()
        # Claimed now, before the plan: a warm worker of this job is never retired while it plans.
        self.infos = [a.info.remote(config.worker, self.job) for a in actors]

    def ready(self, actors: list[Any]) -> list[dict[str, Any]]:
        """Each worker's info once its model is loaded. A warm worker that ended itself between
        the lookup and now (it had been idle for exactly its time) is replaced by a new one.

        Workers that wait for CPUs another job's warm workers hold ask those to retire again
        now and then (that job may have ended); once some of this job's warm workers are up,
        those still waiting are given up, so two jobs that each got part of the CPUs both run."""
        import ray

        refs = self.infos[: len(actors)]
        noted = time.monotonic()
        while True:
            up, waiting = ray.wait(refs, num_returns=len(refs), timeout=RETIRE_WAIT_S)
            if not waiting:
                break
            # Only warm workers (raybake's own embedded Ray) give up: elsewhere an autoscaler
            # may be adding the nodes they wait for.
            if up and self.config.keep_warm_s:
                for ref in waiting:
                    ray.kill(actors[refs.index(ref)])
                keep = [i for i, ref in enumerate(refs) if ref not in waiting]
                actors[:] = [actors[i] for i in keep]
                refs = [refs[i] for i in keep]
                break
            retire_other_pools(keep=self.keep)
            if time.monotonic() - noted >= WORKER_WAIT_NOTE_S:
                # On a cluster that must first add nodes for them (an autoscaler, a queue) the wait
                # takes minutes and must not look like a hang.
                noted = time.monotonic()
                log(
                    f"waiting for {len(waiting)} of {len(refs)} worker(s) to start: the cluster has no room for "
                    "them yet (an autoscaling cluster is adding nodes; else lower --workers)"
                )
        infos = []
        for index, ref in enumerate(refs):
            try:
                infos.append(ray.get(ref))
            except ray.exceptions.RayError as exc:
                if not self.config.keep_warm_s or CREATION_FAILED in str(exc):
                    # A model that cannot be loaded says so with its remedy (job/failure.py); any
                    # other constructor failure (options the model cannot take) as its own line.
                    text = str(exc)
                    why = failure.explain_text(text)[1] if failure.MODEL.search(text) else None
                    raise ModelNotLoaded(why or f"the workers could not load the model: {_last_line(exc)}") from exc
                actors[index] = self.actor_class.remote(self.config.worker)
                infos.append(ray.get(actors[index].info.remote(self.config.worker, self.job)))
            if "refused" in infos[-1]:
                for actor in self.actors:  # warm or not, each would refuse every job of its settings
                    ray.kill(actor)
                raise ModelNotLoaded(infos[-1]["refused"])
        return infos

    def release(self) -> None:
        """This job holds its warm workers no longer: they wait for the next one, or retire.
        Waited for (briefly): a driver that ends at once would otherwise drop the calls."""
        import ray

        # Once: a job that ends on an error releases its workers before its last word (last_word).
        if self.config.keep_warm_s and ray.is_initialized():
            released = [actor.release.remote(self.job) for actor in self.actors]
            ray.wait(released, num_returns=len(released), timeout=RETIRE_WAIT_S)

    @classmethod
    def start(cls, config: RunConfig) -> Pool:
        import ray

        ray.init(log_to_driver=True, logging_level=logging.WARNING)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        # --device cuda asks for GPU workers even where the cluster has no GPU yet: an autoscaling
        # cluster (`invoke cluster`) adds the GPU nodes that Ray cannot place the workers on.
        use_gpu = config.worker.options.device == "cuda" or (gpus > 0 and config.worker.options.device == "auto")
        # A worker must fit on one node: on a multi-node cluster the total would ask for more CPUs
        # than any node has, and the workers would never start.
        nodes = ray.nodes()
        node_cpus = max((n["Resources"].get("CPU", 0) for n in nodes if n["Alive"]), default=1)
        cpus = config.cpus_per_worker or (gpu_worker_cpus(nodes) if use_gpu else default_cpus_per_worker(node_cpus))
        count = config.workers or (max(1, gpus) if use_gpu else max(1, int(resources.get("CPU", 1) // cpus)))
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
        # Warm pools exist only where jobs ran with keep-warm on (raybake's own embedded Ray).
        retire_other_pools(keep=pool)
        if pool is None:
            return cls(config, [actor_class.remote(wc) for _ in range(count)], use_gpu, cpus, actor_class, None)
        warm = {"namespace": WARM_NAMESPACE, "lifetime": "detached", "get_if_exists": True}
        actors = [
            worker_class.options(**options, **warm, name=f"{pool}-{i}").remote(wc, config.keep_warm_s)
            for i in range(count)
        ]
        return cls(config, actors, use_gpu, cpus, actor_class, pool)

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
        delayed: list[tuple[float, Shard]] = []  # (when, shard): retries waiting out their backoff
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

        def retry_or_fail(shard: Shard, reason: str) -> None:
            if attempts[shard.id] > retries:
                failed[shard.id] = reason
                return
            wait = min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_S * 2 ** (attempts[shard.id] - 1))
            log(f"shard {shard.index} ({shard.id}) failed, retrying in {wait:.0f}s: {reason}")
            delayed.append((time.monotonic() + wait, shard))

        alive = set(range(len(actors)))
        top_up()
        try:
            while pending or delayed:
                now = time.monotonic()
                queue.extend(shard for when, shard in delayed if when <= now)
                delayed[:] = [(when, shard) for when, shard in delayed if when > now]
                top_up()
                if not pending:
                    time.sleep(min(WAIT_STEP_S, max(0.0, min(when for when, _ in delayed) - now)))
                    continue
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
                    retry_or_fail(shard, str(exc).splitlines()[0])
                    if not alive:
                        failed.update({s.id: "no worker left" for s in [*queue, *(s for _, s in delayed)]})
                        queue.clear()
                        delayed.clear()
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if exc.cause else exc
                    first = (str(cause).splitlines() or [""])[0]
                    retry_or_fail(shard, urls.shown(f"{type(cause).__name__}: {first}"[:300]))
                else:
                    spent = timers[actors.index(actor)]
                    spent.update({k: v for k, v in stats.items() if k.endswith("_seconds")})
                    peaks[actors.index(actor)] = max(peaks[actors.index(actor)], stats["peak_rss_mib"])
                    progress.advance(shard_bytes=shard.bytes, documents=stats["documents"])
                top_up()
        finally:
            # A stopped job leaves no shard running on a worker that outlives it (a warm one):
            # each cancel is waited for, since a driver that exits at once (`ray job stop`'s
            # SIGTERM) can drop the requests still unsent, and the warm worker would go on
            # computing shards that nobody reads.
            for ref in pending:
                ray.cancel(ref)
            if pending:
                ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_S)
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
    return f"raybake-warm-{digest(what)}"


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
    Each file's size and version (etag or mtime) say whether the corpus is still the same; the
    image, the job's code, the frameworks and the model's files whether the job is."""
    wc = config.worker
    spec = {
        "corpus": urls.redact(wc.corpus),
        "files": [[f.rel, f.size, f.version] for f in files],
        "task": wc.task,
        "model": wc.model,
        "model_files": _model_digest(wc.model),
        "options": asdict(wc.options),
        "fields": asdict(wc.fields),
        "split_bytes": config.split_bytes,
        "max_record_bytes": wc.max_record_bytes,
        "image": os.environ.get("RAYBAKE_IMAGE"),
        "code": _code_digest(),
        "versions": _versions(),
    }
    # As spec.json holds it (a tuple of --stop strings reads back as a list): a rerun compares equal.
    return json.loads(json.dumps(spec))


def _identity(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec as two jobs are compared: a presigned corpus URL counts without its signature and
    its dates (signed again, it names the same files, whose identities are in `files`)."""
    return {**spec, "corpus": urls.unsigned(str(spec.get("corpus", "")))}


def _code_digest() -> str:
    """The job's own code, by content: another job/ may give other results."""
    root = Path(__file__).parent
    files = sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json") and "__pycache__" not in p.parts)
    return digest([(str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files])


def _model_digest(model: str) -> str | None:
    """A model directory's files by name, size and mtime (weights are too big to hash on every
    run); None for a hub id, whose name and --revision the spec holds."""
    root = Path(model).expanduser()
    if not root.is_dir():
        return None
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return digest([(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


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
    read (nobody counted them before), and a shard without a part is missing as a whole. Ids are
    counted part by part, in memory that does not grow with the corpus (`count_distinct`)."""
    finished = output.finished()
    planned = {part_name(s) for s in shards}
    parts: list[dict[str, Any]] = []
    totals: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    sums: collections.Counter[str] = collections.Counter()  # a task's counted columns: generate's tokens
    missing_shards, missing_bytes = 0, 0
    for shard in shards:
        name = part_name(shard)
        if name not in finished:
            missing_shards += 1
            missing_bytes += shard.bytes
            continue
        stats = output.part_stats(name)
        parts.append({"file": f"parts/{name}", "rows": stats["rows"], "shard": shard.id})
        for key in (
            "documents",
            "ok",
            "error",
            "truncated",
            "chunks",
            "chunked",
            "real_tokens",
            "padded_tokens",
            "bytes_read",
        ):
            totals[key] += stats[key]
        reasons.update(stats["errors_by_reason"])
        sums.update(stats.get("column_sums", {}))
        for key in ("read", "tokenize", "compute", "write", "wait"):
            totals[f"{key}_seconds"] += stats[f"{key}_seconds"]
    ids = (output.document_ids(part["file"].removeprefix("parts/")) for part in parts)
    distinct = count_distinct(ids, rows=totals["documents"])
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
            # Documents whose --id-field value an earlier document already has: both are kept
            # (`source` tells them apart), and this says the ids are not keys. Documents, not rows:
            # under --long-documents chunk a document's id repeats on each of its chunk rows.
            "duplicate_ids": totals["documents"] - distinct,
        },
        "errors_by_reason": dict(reasons),
        # --long-documents chunk: the windows made, and the documents longer than one window.
        "chunks": {"total": totals["chunks"], "documents_chunked": totals["chunked"]},
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
            **sums,
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
