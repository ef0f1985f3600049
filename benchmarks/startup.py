"""`invoke bench-start`: how long a trivial job takes to start with the dependencies in the image,
against the same job that has Ray pip-install them at start (`runtime_env={"pip": [...]}`).

Both run on one local Docker cluster made from the image (head + 2 workers, started and removed
here). The job imports torch and transformers in a task on a worker and prints their versions;
the time is from submission to SUCCEEDED, as a user waits for it.

The image already holds torch and transformers, and Ray's pip environments see the image's
packages (virtualenv --system-site-packages), so the pip run adds `--ignore-installed`: every
node then installs them as on a cluster whose image lacks them. Ray caches an environment per
node, so the first pip run is the cold start a new cluster pays and the second the cached one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import statistics
import time
from pathlib import Path
from typing import Any

from raybake import poll, state
from raybake.clusters import localcluster
from raybake.clusters.address import AddressBackend
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.image import build as images
from raybake.result import ended
from raybake.versions import pins

PROBE = (
    "import ray; ray.init(); "
    "probe = ray.remote(num_cpus=1)(lambda: __import__('torch').__version__ + ' ' "
    "+ __import__('transformers').__version__); "
    "print('raybake-probe', ray.get(probe.remote()))"
)
TIMEOUT_S = 1800


def pip_runtime_env() -> dict[str, Any]:
    return {
        "pip": {
            "packages": [f"torch=={pins()['torch']}", f"transformers=={pins()['transformers']}"],
            "pip_install_options": ["--ignore-installed", "--disable-pip-version-check", "--no-cache-dir"],
            "pip_check": False,
        }
    }


def timed_job(backend: AddressBackend, runtime_env: dict[str, Any] | None) -> float:
    started = time.monotonic()
    job_id = backend.client.submit_job(entrypoint=f"python -c {shlex.quote(PROBE)}", runtime_env=runtime_env)

    def stopped() -> RaybakeError:
        backend.stop(job_id)
        return RaybakeError(f"benchmark job {job_id} did not finish within {TIMEOUT_S}s", ExitCode.FAILED)

    # Polled often: the time to SUCCEEDED is what this measures.
    result = poll.until(lambda: backend.status(job_id), done=ended, every_s=0.2, within_s=TIMEOUT_S, gave_up=stopped)
    elapsed = time.monotonic() - started
    if result.status != "SUCCEEDED":
        tail = backend.logs(job_id).strip().splitlines()[-3:]
        raise RaybakeError(f"benchmark job {job_id} {result.status}: {' | '.join(tail)}", ExitCode.FAILED)
    return round(elapsed, 2)


def image_sizes(settings: Settings) -> dict[str, int]:
    """Bytes of each variant's last built image that is on this engine."""
    api = images.docker_api()
    sizes = {}
    for variant, built in state.images(settings).items():
        if images.image_exists(api, built["ref"]):
            sizes[variant] = api.inspect_image(built["ref"])["Size"]
    return sizes


def run(settings: Settings, *, image: str | None, repeats: int, dashboard_port: int, out: Path) -> dict[str, Any]:
    """Start a cluster of its own (beside any `invoke up` one), time the jobs, remove it."""
    bench = dataclasses.replace(settings, cluster_name="raybake-bench", cluster_dashboard_port=dashboard_port)
    cluster = localcluster.up(bench, workers=2, image=image)
    try:
        backend = AddressBackend(bench, cluster.url)
        baked = [timed_job(backend, None) for _ in range(repeats)]
        pip_cold = timed_job(backend, pip_runtime_env())
        pip_cached = timed_job(backend, pip_runtime_env())
    finally:
        localcluster.down(bench)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "image": cluster.image,
        "cluster": "head + 2 workers (1 CPU each), local Docker",
        "baked_seconds": baked,
        "baked_median_seconds": statistics.median(baked),
        "pip_cold_seconds": pip_cold,
        "pip_cached_seconds": pip_cached,
        "image_bytes": image_sizes(settings),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "start.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary(report: dict[str, Any]) -> str:
    sizes = ", ".join(f"{v} {b / 1e9:.2f} GB" for v, b in sorted(report["image_bytes"].items()))
    return "\n".join(
        [
            f"job start, {report['cluster']}, {report['machine']}:",
            f"  dependencies baked into the image: {report['baked_median_seconds']:.1f} s "
            f"(median of {len(report['baked_seconds'])})",
            f"  runtime_env pip, cold nodes:       {report['pip_cold_seconds']:.1f} s",
            f"  runtime_env pip, cached env:       {report['pip_cached_seconds']:.1f} s",
            f"image size: {sizes or 'no image on this engine'}",
        ]
    )
