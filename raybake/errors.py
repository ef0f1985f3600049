"""The one exception type the invoke tasks turn into a one-line message and an exit code."""

from __future__ import annotations


class RaybakeError(Exception):
    """A failure the user can act on: the message says what went wrong and what to do."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
