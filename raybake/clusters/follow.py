"""Follow a running job: stream its logs, turn progress lines into a bar, wait for the end.

The job prints `raybake-progress docs=D/T shards=S/N rate=R/s eta=Es` lines (job/run.py); they
become a progress bar here and every other line passes through unchanged.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

from tqdm import tqdm

from raybake import console

PROGRESS = re.compile(r"raybake-progress docs=(\d+)/(\d+) shards=(\d+)/(\d+)(?: rate=(\S+) eta=(\S+))?")
# The job measures its own rate and ETA; log lines reach us in bursts, so a rate timed here
# would be off by orders of magnitude.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}]{postfix}"


class LogPrinter:
    """Feeds log chunks in; prints whole lines; keeps a bar of documents done."""

    def __init__(self, out: TextIO | None = None, *, bar: bool = True) -> None:
        # sys.stdout as it is now, not as it was at import: callers and tests may redirect it.
        self.out = out or sys.stdout
        self.show_bar = bar
        self.bar: tqdm | None = None
        self.partial = ""

    def feed(self, chunk: str) -> None:
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        for line in lines:
            self.line(line)

    def close(self) -> None:
        if self.partial:
            self.line(self.partial)
            self.partial = ""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, line: str) -> None:
        match = PROGRESS.search(line)
        if match and self.show_bar:
            done, total = int(match.group(1)), int(match.group(2))
            if self.bar is None:
                self.bar = tqdm(
                    total=total, unit="doc", file=self.out, dynamic_ncols=True, desc="documents", bar_format=BAR_FORMAT
                )
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            rate = f", {match.group(5)}, eta {match.group(6)}" if match.group(5) else ""
            self.bar.set_postfix_str(f"shards {match.group(3)}/{match.group(4)}{rate}")
            return
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            console.line(line, out=self.out)
