"""What a job came to: its status, the statuses that end it, and the exit code each gives.

Below the backends and the Kubernetes client, which both speak it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from raybake.errors import ExitCode, RaybakeError

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# The built-in job's last line when it stops early (job/failure.py): the cause and the remedy.
JOB_ERROR = "raybake: error: "
# Ray's message for a failed entrypoint; the log tail that follows it is the job's log, not a reason.
ENTRYPOINT_EXIT = re.compile(r"failed with exit code (\d+)")
LOG_TAIL = ", last available logs"


@dataclass(frozen=True)
class JobResult:
    job_id: str
    status: str  # PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    message: str = ""

    @property
    def reason(self) -> str:
        """One line: the job's own error line where the message's log tail holds one, else the
        first line of the cluster's message. The traceback stays in the job's log."""
        lines = [line.strip() for line in self.message.splitlines() if line.strip()]
        said = [line.split(JOB_ERROR, 1)[1] for line in lines if JOB_ERROR in line]
        if said:
            return said[-1]
        return lines[0].split(LOG_TAIL)[0] if lines else ""


class AlreadySubmitted(RaybakeError):
    """The cluster already holds a job under this submission id: another submit won the race."""


def ended(result: JobResult) -> bool:
    return result.status in TERMINAL


def exit_code(result: JobResult) -> ExitCode:
    """0 only for SUCCEEDED; anything else that ended, or never ended, is a failure: the code
    the built-in job gave with its error line (2 refused input, 3 a store it could not reach or
    whose credentials were refused), else 1. A user's own script's exit codes mean its own things."""
    if result.status == "SUCCEEDED":
        return ExitCode.OK
    code = ENTRYPOINT_EXIT.search(result.message)
    if result.status == "FAILED" and code and JOB_ERROR in result.message:
        return next((c for c in ExitCode if c.value == int(code.group(1)) and c != ExitCode.OK), ExitCode.FAILED)
    return ExitCode.FAILED
