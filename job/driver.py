"""The driver: plan shards, skip finished ones, feed a pool of workers, write the manifest.

Exit codes: 0 every document has a row; 1 some shards failed (rerun resumes them), or more
documents failed in the model than --max-error-rate allows; 2 the input was refused before
anything ran; 3 the store could not be reached or refused the credentials. A failure ends with
one line, `raybake: error: ...` (job/failure.py).
"""

from __future__ import annotations

import dataclasses
import os
import time

from job import failure, urls
from job import spec as job_spec
from job.config import RunConfig
from job.corpus import CorpusError, CorpusFile, Shard, auto_split_bytes, check, plan_shards, scan
from job.manifest import MANIFEST_FILE, build_manifest, too_many_errors
from job.output import DamagedPart, Output, part_name
from job.pool import ModelNotLoaded, Pool
from job.progress import log


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
    spec = job_spec.of(config, files)
    # Created exclusively: of two jobs started together on one output, the second finds the first's.
    if not output.create_json(job_spec.SPEC_FILE, spec):
        previous = output.read_json(job_spec.SPEC_FILE) or {}
        if job_spec.identity(previous) != job_spec.identity(spec):
            log(f"error: {job_spec.difference(wc.output, previous, spec)}")
            return 2

    done = finished(output, shards)
    todo = [s for s in shards if part_name(s) not in done]
    if len(todo) < len(shards):
        log(f"resuming: {len(shards) - len(todo)} shard(s) already done, {len(todo)} to go")

    _check_image()
    assert pool is not None
    try:
        result = pool.run(todo, done_bytes=total_bytes - sum(s.bytes for s in todo), total_bytes=total_bytes)
    except ModelNotLoaded as exc:
        return last_word(str(exc), 2, pool)
    if not result.failed:
        output.sweep_temporaries()
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
    output.write_json(MANIFEST_FILE, manifest.to_json())
    counts = manifest.counts
    log(
        f"done: {counts.ok} ok, {counts.error} error of {counts.documents} documents read, "
        f"{manifest.shards.missing} shard(s) missing -> {wc.output}/{MANIFEST_FILE}"
    )
    if result.failed:
        for shard_id, reason in result.failed.items():
            log(f"shard {shard_id} failed: {reason}")
        code, reason = failure.explain_text("\n".join(result.failed.values()))
        return last_word(
            f"{len(result.failed)} shard(s) failed: {reason}; the output is {manifest.status}; "
            "run the same command again to retry only those",
            code,
            pool,
        )
    if not manifest.complete:
        missing = manifest.shards.missing
        return last_word(f"the output is {manifest.status}: {missing} shard(s) missing", 1, pool)
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


def finished(output: Output, shards: list[Shard]) -> set[str]:
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


def _check_image() -> None:
    """The client says which image it built; a cluster running another one gives other results."""
    expected, actual = os.environ.get("RAYBAKE_EXPECTED_IMAGE"), os.environ.get("RAYBAKE_IMAGE")
    if expected and expected != actual:
        banner = "!" * 78
        log(
            f"{banner}\nraybake: WARNING: this job runs in image {actual!r}, "
            f"but the client expected {expected!r}\nraybake: {banner}"
        )
