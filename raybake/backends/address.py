"""An existing Ray cluster reached by its job submission URL (the dashboard, port 8265).

Everything goes through Ray's JobSubmissionClient: the same path for the embedded local Ray,
a long-running cluster and, behind a port-forward, a KubeRay head.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from raybake.backends.base import TERMINAL, AlreadySubmitted, Backend, JobResult
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.follow import LogPrinter
from raybake.spec import JobSpec

# Poll interval once the log stream has ended but the job has not (streams end early).
POLL_S = 1.0


def read_token(settings: Settings, default_file: Path | None = None) -> str | None:
    """The Ray auth token: from the environment variable, else the token file, else none."""
    token = os.environ.get(settings.token_env)
    if token:
        return token.strip()
    for path in (settings.token_file, os.environ.get("RAY_AUTH_TOKEN_PATH"), default_file):
        if path and Path(path).expanduser().is_file():
            return Path(path).expanduser().read_text().strip()
    return None


def check_reachable(url: str, timeout: float) -> None:
    """Fail in bounded time: a TCP connect first, before Ray's client waits on its own terms."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RaybakeError(f"not a job submission URL: {url!r} (expected http://HOST:8265)", 2)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise RaybakeError(
            f"cannot reach the Ray cluster at {url!r}: {exc.strerror or exc}; "
            "check the address and that the cluster is up",
            3,
        ) from None


class AddressBackend(Backend):
    def __init__(self, settings: Settings, url: str, *, token_file: Path | None = None) -> None:
        self.settings = settings
        self.url = url.rstrip("/")
        self.token = read_token(settings, token_file)
        # The image the cluster should run: the job compares it with its own and warns loudly.
        self.expected_image = settings.expected_image
        self._client: Any = None

    @property
    def client(self):
        if self._client is None:
            check_reachable(self.url, self.settings.connect_timeout_s)
            from ray.job_submission import JobSubmissionClient

            # Ray's client logs every upload and socket at INFO; the user wants the job's own lines.
            for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
                logging.getLogger(name).setLevel(logging.WARNING)

            headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
            try:
                self._client = JobSubmissionClient(self.url, headers=headers, verify=self.settings.verify_tls)
            except Exception as exc:  # noqa: BLE001 - Ray raises bare exceptions for auth and version errors
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if "auth" in first.lower() or "401" in first:
                    raise RaybakeError(
                        f"the Ray cluster at {self.url!r} refused the token: {first}; set "
                        f"{self.settings.token_env} or raybake.token_file",
                        3,
                    ) from None
                raise RaybakeError(f"cannot use the Ray cluster at {self.url!r}: {first}", 3) from None
        return self._client

    def runtime_env(self, spec: JobSpec) -> dict[str, Any]:
        env_vars = {"RAYBAKE_GIT_SHA": git_sha()}
        if self.expected_image:
            env_vars["RAYBAKE_EXPECTED_IMAGE"] = self.expected_image
        return {"env_vars": env_vars}

    def submit(self, spec: JobSpec) -> str:
        try:
            return self.client.submit_job(
                entrypoint=spec.command(),
                submission_id=spec.name or None,
                runtime_env=self.runtime_env(spec),
                metadata={"raybake.task": spec.task, "raybake.output": spec.output},
            )
        except RuntimeError as exc:
            if "already exists" in str(exc):
                raise AlreadySubmitted(f"the cluster already has a job {spec.name!r}", 2) from None
            raise

    def follow(self, job_id: str) -> JobResult:
        printer = LogPrinter()

        async def stream() -> None:
            async for chunk in self.client.tail_job_logs(job_id):
                printer.feed(chunk)

        try:
            asyncio.run(stream())
        except Exception as exc:  # noqa: BLE001 - a broken stream is not a failed job: poll below
            printer.close()
            print(f"raybake: log stream ended early ({type(exc).__name__}); waiting for the job's status")
        printer.close()
        result = self.status(job_id)
        while result.status not in TERMINAL:
            time.sleep(POLL_S)
            result = self.status(job_id)
        return result

    def status(self, job_id: str) -> JobResult:
        try:
            info = self.client.get_job_info(job_id)
        except RuntimeError as exc:
            raise RaybakeError(f"no job {job_id!r} on {self.url}: {str(exc).splitlines()[0]}", 2) from None
        return JobResult(job_id=job_id, status=str(info.status.value), message=info.message or "")

    def logs(self, job_id: str) -> str:
        self.status(job_id)
        return self.client.get_job_logs(job_id)

    def stop(self, job_id: str) -> bool:
        self.status(job_id)
        return bool(self.client.stop_job(job_id))

    def jobs(self) -> list[dict]:
        rows = []
        for job in self.client.list_jobs():
            rows.append(
                {
                    "id": job.submission_id or job.job_id,
                    "status": str(job.status.value),
                    "start": job.start_time,
                    "entrypoint": job.entrypoint,
                }
            )
        return sorted(rows, key=lambda r: r["start"] or 0)


def git_sha() -> str:
    """The client's commit, recorded in the manifest; 'unknown' outside a git checkout."""
    import subprocess

    from raybake.versions import ROOT

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip()
