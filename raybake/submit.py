"""`invoke submit`: check the input, submit, follow with progress, summarize, map to an exit code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from job import urls
from job.records import Manifest
from raybake import console, identity
from raybake.clusters import Backend
from raybake.clusters.base import Placed
from raybake.clusters.transport import on_cluster, output_root
from raybake.errors import ExitCode, RaybakeError
from raybake.report import throughput
from raybake.result import AlreadySubmitted, JobResult, exit_code
from raybake.spec import CLUSTER_PREFIX, JobSpec, is_local_path, with_id
from raybake.versions import ROOT

# How long the client reads a URI corpus before it leaves the check to the cluster.
URI_CHECK_S = 60.0
# The job's reasons for a corpus it could not reach at all: from here, not a verdict on it.
UNREACHED = ("cannot open corpus", "corpus not found")


def preflight(spec: JobSpec, *, strict: bool = False) -> None:
    """Refuse bad input before anything is submitted, with the job's own reading of the corpus.

    The client has none of the job's libraries: it runs `python -m job --check` on the same
    options (on its stdin: a process list shows every argv), the job's command line. A local corpus
    is checked whole; a URI as far as this machine reaches it (a cluster may read what the client
    cannot: its network, its credentials), unless `strict`: the job reads it with this machine's
    credentials (the embedded local Ray), so a store that refuses them here refuses the job too.
    A `cluster:` path is checked only there.
    """
    if spec.entrypoint or spec.corpus.startswith(CLUSTER_PREFIX):
        return
    remote = urls.is_url(spec.corpus)
    argv = [sys.executable, "-m", "job", "--check", *spec.job_argv(source="stdin")[3:]]
    try:
        checked = subprocess.run(
            argv,
            cwd=ROOT,
            input=spec.encoded(),
            capture_output=True,
            text=True,
            timeout=URI_CHECK_S if remote else None,
        )
    except subprocess.TimeoutExpired:
        console.aside(f"note: the corpus did not answer here within {URI_CHECK_S:.0f}s; the cluster reads it")
        return
    if checked.returncode == 0:
        return
    lines = [ln for ln in (checked.stdout + checked.stderr).splitlines() if ln.strip()]
    verdict = next((ln for ln in reversed(lines) if ln.startswith("raybake: error: ")), "")
    reason = verdict or next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "")
    reason = urls.scrub(reason.removeprefix("raybake: ").removeprefix("error: "), spec.corpus)
    # The job's verdict on a corpus it read is final; failing to reach a URI from here is not,
    # unless the job would reach it from here, with the same credentials.
    unreached = checked.returncode == ExitCode.UNREACHABLE or reason.startswith(UNREACHED)
    if remote and strict and verdict and checked.returncode == ExitCode.UNREACHABLE:
        raise RaybakeError(reason, ExitCode.UNREACHABLE)
    if remote and not strict and (not verdict or unreached):
        console.aside(f"note: cannot read the corpus from here ({reason}); the cluster reads it")
        return
    raise RaybakeError(f"refused: {reason}", ExitCode.REFUSED)


def where(output: str) -> str:
    """Where the results are, as the user named them: this machine, a URI, or the cluster's volume."""
    if output.startswith(CLUSTER_PREFIX):
        return f"{on_cluster(output)} on the cluster's volume"
    return urls.redact(output)


def summarize(placed: Placed, result: JobResult, *, why_new: str | None = None) -> str:
    """The final lines: the status, and where the results are as the user named the place;
    `why_new` why this ran anew instead of attaching to an earlier job."""
    lines = [
        f"job {result.job_id}: {result.status}"
        + (f" ({result.reason})" if result.reason and result.status != "SUCCEEDED" else "")
    ]
    if why_new:
        lines.append(f"ran anew: {why_new}")
    output = placed.named.output
    manifest_path = Path(placed.runs.output) / "manifest.json"
    manifest = _manifest(manifest_path) if is_local_path(output) else None
    if manifest is not None:
        rate = throughput(manifest.to_json())
        counts, chunks = manifest.counts, manifest.chunks
        lines.append(
            f"documents: {counts.documents} ({counts.ok} ok, {counts.error} error, "
            f"{'unknown' if counts.missing is None else counts.missing} missing, {counts.truncated} truncated"
            + (f", {counts.duplicate_ids} duplicate ids" if counts.duplicate_ids else "")
            + (f", {chunks.total} chunks ({chunks.documents_chunked} in more than one)" if chunks.total else "")
            + (f") in {manifest.timings.wall_seconds:.1f}s, {rate:.1f} docs/s" if rate else "), all done before")
        )
        for reason, n in sorted(manifest.errors_by_reason.items(), key=lambda kv: -kv[1])[:5]:
            lines.append(f"  {n} x {reason}")
        lines.append(f"results:  {placed.runs.output}/parts/*.parquet")
        lines.append(f"manifest: {manifest_path}")
    else:
        lines.append(f"results: {where(output)}")
    return "\n".join(lines)


def _manifest(path: Path) -> Manifest | None:
    """The job's manifest, or None where there is none, or it is not of this client's version (a
    cluster running an older image): the summary then names where the results are."""
    try:
        return Manifest.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def attempts(backend: Backend, name: str) -> list[tuple[int, str, str]]:
    """(attempt, job id, status) of the jobs submitted under `name`: `name`, `name-2`, `name-3`..."""
    pattern = re.compile(rf"{re.escape(name)}(?:-(\d+))?")
    found = []
    for row in backend.jobs():
        if match := pattern.fullmatch(row["id"]):
            found.append((int(match.group(1) or 1), row["id"], row["status"]))
    return sorted(found)


def newest_attempt(backend: Backend, job_id: str) -> str:
    """The latest attempt of a job: after `X` FAILED and was resubmitted as `X-2`, asking about
    `X` means the run that carries on, not the one that ended."""
    tried = attempts(backend, job_id)
    newest = tried[-1][1] if tried else job_id
    if newest != job_id:
        console.aside(f"{job_id} was submitted again as {newest}; showing {newest}")
    return newest


def changed_since(backend: Backend, spec: JobSpec) -> str | None:
    """Why this spec gets a new job id where the same command ran before: e.g. `image changed
    since raybake-embed-1a2b3c4d ran`. None when nothing of its lineage ran, or it attaches."""
    earlier = [r for r in backend.jobs() if spec.lineage and r.get("lineage") == spec.lineage]
    if not earlier or (earlier[-1].get("identity") or {}) == dict(spec.identity):
        return None
    parts = identity.changed(earlier[-1].get("identity") or {}, dict(spec.identity))
    return f"{', '.join(parts)} changed since {earlier[-1]['id']} ran"


def start_or_attach(backend: Backend, placed: Placed, *, new: bool = False) -> str:
    """Submit the job under its name, or attach to the job already running it.

    A running or finished job of the same spec is attached to, unless `new`. One that FAILED or
    was STOPPED, or SUCCEEDED into an output deleted since, is tried again as `<name>-<attempt>`:
    same output, so it resumes from the parts the earlier attempt finished. Ray refuses an id it
    already holds, so of two submits that race one submits and the other, refused, looks again
    and attaches.
    """
    for _ in range(3):
        tried = attempts(backend, placed.name)
        if tried and not new and tried[-1][2] not in ("FAILED", "STOPPED"):
            _, job_id, status = tried[-1]
            if status != "SUCCEEDED" or not backend.output_lost(placed.runs):
                console.say(f"attaching to {job_id} ({status}), the same job submitted before; --new starts another")
                return job_id
            console.say(
                f"{job_id} SUCCEEDED, but its output {placed.runs.output} holds no manifest.json; running it again"
            )
        attempt = tried[-1][0] + 1 if tried else 1
        name = placed.name if attempt == 1 else f"{placed.name}-{attempt}"
        try:
            job_id = backend.submit(placed.renamed(name))
        except AlreadySubmitted:
            continue
        console.say(f"submitted {job_id}; output {where(urls.redact(placed.named.output))}")
        return job_id
    raise RaybakeError(
        f"could not submit {placed.name!r}: its id kept being taken by concurrent submits", ExitCode.FAILED
    )


def named(backend: Backend, spec: JobSpec, *, name: str | None) -> JobSpec:
    """The job `invoke submit` asks for, with its id: `name` (--name), or a hash of what decides
    its output (corpus, model, options, image, output) so that the same submit finds the same job."""
    root = backend.settings.results_dir if spec.output else output_root(backend.settings)
    parts = identity.of(
        spec, image=backend.image_identity(), settings=backend.settings, strict=backend.credentials_here
    )
    return with_id(spec, name=name, results_dir=root, identity=parts)


def submit(
    backend: Backend, spec: JobSpec, *, follow: bool = True, new: bool = False, dry_run: bool = False
) -> ExitCode:
    """Check, place on the backend, submit or attach, follow; `dry_run` prints what would be submitted.

    The corpus is checked as the user named it: the backend may move it (an upload's root).
    """
    preflight(spec, strict=backend.credentials_here)
    placed = backend.prepare(spec)
    if dry_run:
        console.line(backend.describe(placed), end="")
        return ExitCode.OK
    backend.ready()
    spec = placed.named
    why_new = changed_since(backend, spec)
    if why_new and attempts(backend, spec.name) and not new:
        # --name chose the id: the user's word wins, but not in silence.
        console.warn(f"{why_new}; attaching to {spec.name} all the same (--name); --new runs it anew")
        why_new = None
    elif why_new:
        console.say(f"{why_new}: a new job {spec.name} into {urls.redact(spec.output)}")
    job_id = start_or_attach(backend, placed, new=new)
    if not follow:
        console.say(f"follow it with `invoke logs --job {job_id}`")
        return ExitCode.OK
    try:
        result = backend.follow(job_id)
    except KeyboardInterrupt:
        return interrupted(backend, job_id)
    console.line(summarize(placed, result, why_new=why_new))
    return exit_code(result)


def interrupted(backend: Backend, job_id: str) -> ExitCode:
    """Ctrl-C stops following, not the job, unless the user says so."""
    console.line("")
    answer = ""
    if sys.stdin.isatty():
        try:
            answer = input(f"raybake: stop job {job_id} too? [y/N] ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            answer = ""
    if answer in ("y", "yes"):
        backend.stop(job_id)
        console.say(f"stop requested for {job_id}")
    else:
        console.say(
            f"{job_id} goes on; `invoke logs --job {job_id}` follows it again, `invoke stop --job {job_id}` stops it"
        )
    return ExitCode.INTERRUPTED
