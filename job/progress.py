"""What the job says on stdout: its own lines, and the progress lines the client draws a bar from."""

from __future__ import annotations

import time

from job import urls

PROGRESS_PREFIX = "raybake-progress"


def log(message: str) -> None:
    print(f"raybake: {urls.shown(message)}", flush=True)


class Progress:
    """Progress lines on stdout; the client turns them into a bar, a human reads them as they are.

    The one format both sides share (raybake/follow.py parses it):
        raybake-progress bytes=DONE/TOTAL docs=D shards=S/N rate=R/s eta=Es
    Bytes are of the corpus (known from the plan, before any document is counted); docs are
    the documents read so far; rate is documents per second; eta comes from the byte rate.
    """

    def __init__(self, *, total_bytes: int, done_bytes: int, shards_total: int) -> None:
        self.total, self.done, self.start_done = total_bytes, done_bytes, done_bytes
        self.docs, self.shards_total, self.shards_done = 0, shards_total, 0
        self.started = self.last = time.monotonic()
        self.reported = -1

    def advance(self, *, shard_bytes: int, documents: int) -> None:
        self.done += shard_bytes
        self.docs += documents
        self.shards_done += 1
        self.report()

    def report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if (not force and now - self.last < 1.0) or self.reported == self.done:
            return
        self.last, self.reported = now, self.done
        elapsed = max(now - self.started, 1e-9)
        byte_rate = (self.done - self.start_done) / elapsed
        eta = (self.total - self.done) / byte_rate if byte_rate > 0 else 0.0
        print(
            f"{PROGRESS_PREFIX} bytes={self.done}/{self.total} docs={self.docs} "
            f"shards={self.shards_done}/{self.shards_total} rate={self.docs / elapsed:.1f}/s eta={eta:.0f}s",
            flush=True,
        )
