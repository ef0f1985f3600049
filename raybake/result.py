"""What a job came to: its status, the statuses that end it, and the exit code each gives.

Below the backends and the Kubernetes client, which both speak it.
"""

from __future__ import annotations

from dataclasses import dataclass

from raybake.errors import ExitCode, RaybakeError

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class JobResult:
    job_id: str
    status: str  # PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    message: str = ""


class AlreadySubmitted(RaybakeError):
    """The cluster already holds a job under this submission id: another submit won the race."""


def ended(result: JobResult) -> bool:
    return result.status in TERMINAL


def exit_code(result: JobResult) -> ExitCode:
    """0 only for SUCCEEDED; anything else that ended, or never ended, is a failure."""
    return ExitCode.OK if result.status == "SUCCEEDED" else ExitCode.FAILED
