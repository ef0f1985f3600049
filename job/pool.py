"""The worker pool: PoolWorker actors (warm ones outlive their job), and the loop that feeds them
shards, retries the failed ones with backoff and cancels what is in flight when the job stops."""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from job import credentials, failure, urls
from job.config import SPEC_VARIABLE, RunConfig, WorkerConfig
from job.corpus import Shard
from job.digest import digest
from job.progress import Progress, log
from job.records import ShardStats, WorkerInfo

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
# How often a job says that its workers have not started yet.
WORKER_WAIT_NOTE_S = 30.0


class ModelNotLoaded(Exception):
    """A worker's model load failed, or it refused the model as asked (job.pipelines.base.ModelRefused):
    every worker would fail alike, so the job ends with the reason in one line."""


@dataclass(frozen=True)
class Refused:
    """A worker that refused the model as asked: why (job.pipelines.base.ModelRefused)."""

    reason: str


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

    def info(self, config: WorkerConfig, job: str = "") -> WorkerInfo | Refused:
        """This worker as the job `config` gets it (its token budget, say, is that job's),
        claimed by `job` until it calls `release`."""
        if self.refused is not None:
            return Refused(self.refused)
        with self.lock:
            self._in_service()
            self.jobs, self.last_used = self.jobs + 1, time.monotonic()
            self.claims.add(job)
        return dataclasses.replace(self.worker.info(config), warm=self.jobs > 1, loaded_at=self.loaded_at)

    def process(self, shard: Shard, config: WorkerConfig) -> ShardStats:
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

    workers: list[WorkerInfo] = field(default_factory=list)
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

    def ready(self, actors: list[Any]) -> list[WorkerInfo]:
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
        infos: list[WorkerInfo] = []
        for index, ref in enumerate(refs):
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as exc:
                if not self.config.keep_warm_s or CREATION_FAILED in str(exc):
                    # A model that cannot be loaded says so with its remedy (job/failure.py); any
                    # other constructor failure (options the model cannot take) as its own line.
                    text = str(exc)
                    why = failure.explain_text(text)[1] if failure.MODEL.search(text) else None
                    raise ModelNotLoaded(why or f"the workers could not load the model: {_last_line(exc)}") from exc
                actors[index] = self.actor_class.remote(self.config.worker)
                info = ray.get(actors[index].info.remote(self.config.worker, self.job))
            if isinstance(info, Refused):
                for actor in self.actors:  # warm or not, each would refuse every job of its settings
                    ray.kill(actor)
                raise ModelNotLoaded(info.reason)
            infos.append(info)
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
                f"model warm (loaded {time.time() - (info.loaded_at or 0):.0f}s ago)"
                if info.warm
                else f"model loaded in {info.load_seconds}s"
            )
            log(f"worker on {info.host} (pid {info.pid}): {info.device} {info.dtype}, {loaded}")
        retries = self.config.retries
        queue = collections.deque(todo)
        delayed: list[tuple[float, Shard]] = []  # (when, shard): retries waiting out their backoff
        attempts: collections.Counter[str] = collections.Counter()
        pending: dict[Any, tuple[Any, Shard]] = {}
        failed: dict[str, str] = {}
        timers: list[collections.Counter[str]] = [collections.Counter() for _ in actors]  # by phase
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
                    spent.update(stats.phase_seconds())
                    peaks[actors.index(actor)] = max(peaks[actors.index(actor)], stats.peak_rss_mib)
                    progress.advance(shard_bytes=shard.bytes, documents=stats.documents)
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
            info.seconds = {phase: round(seconds, 3) for phase, seconds in sorted(spent.items())}
            info.peak_rss_mib = peak
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
