"""`invoke submit`: check the input, submit, follow with progress, summarize, map to an exit code."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from raybake.backends import Backend, JobResult, exit_code
from raybake.errors import RaybakeError
from raybake.spec import JobSpec
from raybake.transport import CLUSTER_PREFIX, is_local_path, on_cluster
from raybake.versions import ROOT


def preflight(spec: JobSpec) -> None:
    """Refuse bad input before anything is submitted, with the job's own reading of the corpus.

    The client never imports job/: it runs `python -m job --check` on the same arguments, the
    one contract the two sides share. Only local corpora can be checked from here.
    """
    if spec.entrypoint or not is_local_path(spec.corpus):
        return
    local = dataclasses.replace(spec, corpus=str(Path(spec.corpus).resolve()))
    argv = [sys.executable, "-m", "job", "--check", *local.job_argv()[3:]]
    checked = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if checked.returncode != 0:
        lines = [ln for ln in (checked.stdout + checked.stderr).splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "")
        raise RaybakeError(f"refused: {reason.removeprefix('raybake: ').removeprefix('error: ')}", 2)


def where(output: str) -> str:
    """Where the results are, as the user named them: this machine, a URI, or the cluster's volume."""
    if output.startswith(CLUSTER_PREFIX):
        return f"{on_cluster(output)} on the cluster's volume"
    return output


def summarize(spec: JobSpec, result: JobResult, *, output: str | None = None) -> str:
    """The final lines; `output` is the location as the user gave it, before the backend rewrote it."""
    lines = [
        f"job {result.job_id}: {result.status}"
        + (f" ({result.message})" if result.message and result.status != "SUCCEEDED" else "")
    ]
    output = output or spec.output
    manifest_path = Path(spec.output) / "manifest.json"
    if is_local_path(output) and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        counts, timings = manifest["counts"], manifest["timings"]
        rate = counts["documents"] / timings["wall_seconds"] if timings["wall_seconds"] else 0.0
        lines.append(
            f"documents: {counts['documents']} ({counts['ok']} ok, {counts['error']} error, "
            f"{counts['missing']} missing, {counts['truncated']} truncated) in "
            f"{timings['wall_seconds']:.1f}s, {rate:.1f} docs/s"
        )
        for reason, n in sorted(manifest["errors_by_reason"].items(), key=lambda kv: -kv[1])[:5]:
            lines.append(f"  {n} x {reason}")
        lines.append(f"results:  {spec.output}/parts/*.parquet")
        lines.append(f"manifest: {manifest_path}")
    else:
        lines.append(f"results: {where(output)}")
    return "\n".join(lines)


def submit(backend: Backend, spec: JobSpec, *, follow: bool = True, dry_run: bool = False) -> int:
    """Check, adapt to the backend, submit, follow; with `dry_run`, print what would be submitted."""
    preflight(spec)
    given = spec.output
    spec = backend.prepare(spec)
    if dry_run:
        print(backend.describe(spec), end="")
        return 0
    job_id = backend.submit(spec)
    print(f"raybake: submitted {job_id}; output {where(given)}", flush=True)
    if not follow:
        print(f"raybake: follow it with `invoke logs --job {job_id}`")
        return 0
    try:
        result = backend.follow(job_id)
    except KeyboardInterrupt:
        return interrupted(backend, job_id)
    print(summarize(spec, result, output=given))
    return exit_code(result)


def interrupted(backend: Backend, job_id: str) -> int:
    """Ctrl-C stops following, not the job, unless the user says so."""
    print()
    answer = ""
    if sys.stdin.isatty():
        try:
            answer = input(f"raybake: stop job {job_id} too? [y/N] ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            answer = ""
    if answer in ("y", "yes"):
        backend.stop(job_id)
        print(f"raybake: stop requested for {job_id}")
    else:
        print(
            f"raybake: {job_id} goes on; `invoke logs --job {job_id}` follows it again, "
            f"`invoke stop --job {job_id}` stops it"
        )
    return 130
