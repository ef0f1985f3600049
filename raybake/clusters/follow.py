"""Follow a running job: stream its logs, turn progress lines into a bar, wait for the end.

The job prints progress lines in the format documented once, on job.progress.Progress:
`raybake-progress bytes=B/T docs=D shards=S/N rate=R/s eta=Es`. The bar counts corpus bytes
(known from the plan before any document is read) and shows documents, their rate and the ETA;
every other line passes through unchanged, but for a Python traceback: the job ends a failure
with one line that names its cause (job/failure.py), and the traceback stays in its log, for
`invoke logs`.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

from tqdm import tqdm

from raybake import console
from raybake.spec import TRACEBACK_BEGIN, TRACEBACK_END

PROGRESS = re.compile(
    r"raybake-progress bytes=(?P<done>\d+)/(?P<total>\d+) docs=(?P<docs>\d+) "
    r"shards=(?P<shards>\d+)/(?P<shards_total>\d+) rate=(?P<rate>\S+) eta=(?P<eta>\S+)"
)
# Characters of the fed log that the whole log, read at the end, must repeat to be caught up from.
CATCH_UP_CHECK = 4096
# The job measures its own rate and ETA; log lines reach us in bursts, so a rate timed here
# would be off by orders of magnitude.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}]{postfix}"
# Ray prefixes a worker's lines with where they come from, coloured: `(PoolWorker pid=12, ip=10.0.0.3) `.
COLOUR = r"(?:\x1b\[[0-9;]*m)*"
SOURCE = re.compile(rf"^{COLOUR}\([^)]*pid=\d+[^)]*\){COLOUR} ")
TRACEBACK = "Traceback (most recent call last):"
# The lines between two tracebacks of one chain.
CHAINED = ("The above exception was the direct cause", "During handling of the above exception")
HIDDEN = "(a traceback: `invoke logs --job ID` shows it)"


class LogPrinter:
    """Feeds log chunks in; prints whole lines; keeps a bar of documents done."""

    def __init__(self, out: TextIO | None = None, *, bar: bool = True) -> None:
        # sys.stdout as it is now, not as it was at import: callers and tests may redirect it.
        self.out = out or sys.stdout
        self.show_bar = bar
        self.bar: tqdm | None = None
        self.partial = ""
        # How much of the log was fed, and its last characters: what `catch_up` checks against.
        self.fed, self.fed_tail = 0, ""
        # Inside the job's "marked" traceback, "inside" another, just "after" one (a chained one may
        # follow), or "": its lines are skipped.
        self.traceback = ""

    def feed(self, chunk: str) -> None:
        self.fed += len(chunk)
        self.fed_tail = (self.fed_tail + chunk)[-CATCH_UP_CHECK:]
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        for line in lines:
            self.line(line)

    def catch_up(self, whole_log: str) -> None:
        """Feed what a job's whole log holds past what was fed already. Ray's log stream learns of
        a job's end seconds after its status does, so a follower stops the stream at the end
        and reads the rest at once. A log that does not continue what was fed is left alone
        (nothing is printed twice)."""
        if whole_log[: self.fed].endswith(self.fed_tail):
            self.feed(whole_log[self.fed :])

    def close(self) -> None:
        if self.partial:
            self.line(self.partial)
            self.partial = ""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, line: str) -> None:
        if self._traceback(SOURCE.sub("", line)):
            return
        match = PROGRESS.search(line)
        if match and self.show_bar:
            done, total = int(match["done"]), int(match["total"])
            if self.bar is None:
                self.bar = tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    file=self.out,
                    dynamic_ncols=True,
                    desc="corpus",
                    bar_format=BAR_FORMAT,
                )
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(
                f"{match['docs']} docs, {match['rate']}, eta {match['eta']}, "
                f"shards {match['shards']}/{match['shards_total']}"
            )
            return
        self._print(line)

    def _traceback(self, text: str) -> bool:
        """Whether the line belongs to a traceback (and is not printed); one note stands for it.
        The job's own comes between its markers; another process's (a worker's, forwarded by
        Ray) is known by Python's header and its indented lines."""
        if text == TRACEBACK_BEGIN:
            self._print(HIDDEN)
            self.traceback = "marked"
            return True
        if self.traceback == "marked":
            self.traceback = "" if text == TRACEBACK_END else "marked"
            return True
        if text.startswith(TRACEBACK):
            if not self.traceback:
                self._print(HIDDEN)
            self.traceback = "inside"
            return True
        if not self.traceback:
            return False
        blank = not text.strip()
        if self.traceback == "inside" and (blank or text[0].isspace()):
            return True
        if self.traceback == "inside":
            self.traceback = "after"  # the exception's own line; a chained traceback may follow
            return True
        if blank or text.startswith(CHAINED):
            return True
        self.traceback = ""
        return False

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            console.line(line, out=self.out)
