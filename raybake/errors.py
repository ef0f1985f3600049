"""Exit codes, and the one exception type the invoke tasks turn into a one-line message and one of them.

docs/troubleshooting.md explains each code to users; this is the only place their numbers are written.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    # The job FAILED or was STOPPED; a build, a push or a benchmark failed.
    FAILED = 1
    # Bad input, an unknown setting, a missing image or tool: refused before anything ran.
    REFUSED = 2
    # The Ray cluster, the Kubernetes API or the Docker engine cannot be reached, or refused the credentials.
    UNREACHABLE = 3
    # Ctrl-C: 128 + SIGINT, as a shell reports it.
    INTERRUPTED = 130


class RaybakeError(Exception):
    """A failure the user can act on: the message says what went wrong and what to do."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.code = code
