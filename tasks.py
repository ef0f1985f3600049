"""raybake's front door: `invoke --list`. Thin: parse flags, call raybake.*, map errors to exits.

Defaults live in `ns.configure` below and in invoke.yaml; any of them can be overridden by an
INVOKE_RAYBAKE_<NAME> environment variable, and the flags of a task override all of those.
"""

from __future__ import annotations

import functools
import shlex
import sys

from invoke import Collection, Exit, task

from raybake import config as settings_mod
from raybake.errors import RaybakeError

TEST_TIERS = ("unit", "ray", "docker", "e2e")


def _settings(c, **flags):
    return settings_mod.load(c.config.get("raybake"), **flags)


def user_errors(fn):
    """A RaybakeError becomes one line on stderr and its exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RaybakeError as exc:
            raise Exit(f"raybake: {exc}", code=exc.code) from None

    return wrapper


def _backend(c, backend: str | None, address: str | None):
    """The backend the flags choose; an --address alone means the address backend."""
    from raybake.backends import backend_for

    return backend_for(_settings(c, backend=backend or ("address" if address else None), address=address))


@task(
    help={
        "corpus": "file or directory of documents (path or URI): .txt .jsonl .csv .tsv .parquet, .gz",
        "task": "embed | classify | ner | generate (default: embed)",
        "model": "hub id or local model directory (default: sentence-transformers/all-MiniLM-L6-v2)",
        "output": "where results go (default: results/<job name>)",
        "text-field": "text field of jsonl/csv/parquet records (default: text)",
        "id-field": "id field; default: file path and line number",
        "job-args": 'more `python -m job` options, quoted: e.g. "--max-length 128 --top-k 3"',
        "entrypoint": 'run your own command instead of the built-in job, e.g. "python my_job.py"',
        "backend": "local | address | rayjob (default from invoke.yaml: local)",
        "address": "job submission URL of an existing cluster (implies --backend address)",
        "name": "run name (default: raybake-<task>); the job id adds a hash of what the job runs",
        "detach": "submit and return without following the logs",
        "new": "submit even if the same job is already running or finished (default: attach to it)",
    },
)
@user_errors
def submit(
    c,
    corpus="",
    task="embed",
    model=None,
    output=None,
    text_field="text",
    id_field=None,
    job_args="",
    entrypoint=None,
    backend=None,
    address=None,
    name=None,
    detach=False,
    new=False,
):
    """Run the job on a Ray cluster, follow it with progress; exit 0 only if it SUCCEEDED.

    With no cluster configured this starts (or reuses) an embedded local Ray. The same command
    again attaches to the job it started (a retried CI step makes no duplicate); if that job
    failed or was stopped, it runs again and resumes from the shards already done.
    """
    from raybake.spec import DEFAULT_MODEL, JobSpec, with_id
    from raybake.submit import submit as run_submit

    if not corpus and not entrypoint:
        raise RaybakeError("--corpus is required (or --entrypoint for your own script)", 2)
    spec = JobSpec(
        corpus=corpus,
        output=output or "",
        task=task,
        model=model or DEFAULT_MODEL,
        text_field=text_field,
        id_field=id_field,
        job_args=tuple(shlex.split(job_args)),
        entrypoint=entrypoint,
    )
    spec = with_id(spec, run_name=name or f"raybake-{task}", results_dir=_settings(c).results_dir)
    code = run_submit(_backend(c, backend, address), spec, follow=not detach, new=new)
    if code:
        raise Exit(code=code)


@task(help={"job": "job id", "backend": "local | address | rayjob", "address": "job submission URL"})
@user_errors
def status(c, job, backend=None, address=None):
    """Print a job's status; exit 0 only if it SUCCEEDED."""
    from raybake.backends import exit_code

    result = _backend(c, backend, address).status(job)
    print(f"{result.job_id}: {result.status}" + (f" ({result.message})" if result.message else ""))
    if exit_code(result):
        raise Exit(code=exit_code(result))


@task(
    help={
        "job": "job id",
        "follow": "keep streaming until the job ends (exit code as submit)",
        "backend": "local | address | rayjob",
        "address": "job submission URL",
    }
)
@user_errors
def logs(c, job, follow=False, backend=None, address=None):
    """Print a job's logs, or follow them with progress to the end."""
    from raybake.backends import exit_code

    chosen = _backend(c, backend, address)
    if not follow:
        sys.stdout.write(chosen.logs(job))
        return
    result = chosen.follow(job)
    print(f"{result.job_id}: {result.status}")
    if exit_code(result):
        raise Exit(code=exit_code(result))


@task(help={"job": "job id", "backend": "local | address | rayjob", "address": "job submission URL"})
@user_errors
def stop(c, job, backend=None, address=None):
    """Stop a running job; its finished shards stay, and the same submit resumes it."""
    stopped = _backend(c, backend, address).stop(job)
    print(f"raybake: {'stop requested for' if stopped else 'nothing to stop:'} {job}")


@task(help={"backend": "local | address | rayjob", "address": "job submission URL"})
@user_errors
def jobs(c, backend=None, address=None):
    """List the cluster's jobs, oldest first."""
    for row in _backend(c, backend, address).jobs():
        print(f"{row['id']:<40} {row['status']:<10} {row['entrypoint']}")


@task
@user_errors
def down(c):
    """Stop the embedded local Ray started by `invoke submit`."""
    from raybake import embedded

    print("raybake: local Ray stopped" if embedded.stop() else "raybake: no local Ray was running")


@task(
    help={
        "docs": "documents per generated corpus (default 600)",
        "threads": "torch threads for the baseline and the one-worker run (default: all CPUs)",
        "out": "where the corpora, outputs, report.json and throughput.png go",
    }
)
@user_errors
def bench(c, docs=600, threads=0, out="bench-results"):
    """Benchmark raybake against the plain transformers loop on this machine; report ratios."""
    import os
    from pathlib import Path

    from raybake import bench as benchmark

    report = benchmark.run(
        docs=int(docs), threads=int(threads) or os.cpu_count() or 1, out=Path(out), settings=_settings(c)
    )
    print(benchmark.summary(report))
    print(f"raybake: report {out}/report.json, plot {out}/throughput.png")


@task(
    help={
        "tier": f"one of {', '.join(TEST_TIERS)}, or all but e2e when not given",
        "pytest-args": "extra pytest arguments, quoted",
    }
)
def test(c, tier=None, pytest_args=""):
    """Run the tests: unit, ray and docker tiers (e2e needs kind and runs on GitHub)."""
    if tier and tier not in TEST_TIERS:
        raise Exit(f"raybake: unknown test tier {tier!r}; choose one of {', '.join(TEST_TIERS)}", code=2)
    target = f"tests/{tier}" if tier else "tests --ignore=tests/e2e"
    c.run(f"{sys.executable} -m pytest {target} {pytest_args}", pty=False)


@task
def lint(c):
    """ruff over the Python code."""
    c.run(f"{sys.executable} -m ruff check .")
    c.run(f"{sys.executable} -m ruff format --check .", warn=True)


ns = Collection(submit, status, logs, stop, jobs, down, test, lint, bench)
ns.configure({"raybake": {}})
