"""What the client tells the user, and where: the one place that writes to the terminal.

Library code calls say() or warn() (a `raybake: ` line) and line() (text as it comes: the job's
log, a build stream, a rendered manifest) instead of print; the stream is looked up at each
call, so a task, a test or a redirect sees every line. `out` is for callers that collect one
stream of their own (an image build into a buffer, say).
"""

from __future__ import annotations

import sys
from typing import TextIO

PREFIX = "raybake: "


def line(text: str, *, out: TextIO | None = None, end: str = "\n") -> None:
    """Text exactly as given (plus `end`), flushed: a log line arrives when it happens."""
    stream = out or sys.stdout
    stream.write(text + end)
    stream.flush()


def say(message: str, *, out: TextIO | None = None) -> None:
    """One `raybake: ...` line about what the client does."""
    line(PREFIX + message, out=out)


def warn(message: str) -> None:
    """Something the user should know but that does not stop the command."""
    say(f"warning: {message}")


def aside(message: str) -> None:
    """A `raybake: ...` line on stderr, for output that scripts read from stdout."""
    say(message, out=sys.stderr)
