"""Following a job's log: progress lines become a bar, every other line passes through."""

from __future__ import annotations

import io

from raybake.clusters.follow import LogPrinter


def test_progress_lines_become_a_bar_and_other_lines_pass_through(capsys):
    out = io.StringIO()
    printer = LogPrinter(out)
    printer.feed("hello\nraybake-progress bytes=500/1000 docs=5 shards=1/2 rate=1.0/s eta=5s\npart")
    printer.feed("ial line\n")
    printer.close()
    text = out.getvalue()
    assert "hello" in text and "partial line" in text
    assert "raybake-progress" not in text
    assert "50%" in text and "5 docs" in text and "eta 5s" in text
