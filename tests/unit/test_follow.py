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


def test_catch_up_prints_only_what_the_stream_had_not_yet_given():
    out = io.StringIO()
    printer = LogPrinter(out, bar=False)
    printer.feed("line one\nline tw")
    printer.catch_up("line one\nline two\nraybake: done\n")
    printer.close()
    assert out.getvalue().splitlines() == ["line one", "line two", "raybake: done"]


def test_catch_up_from_a_log_that_does_not_continue_the_stream_prints_nothing_twice():
    out = io.StringIO()
    printer = LogPrinter(out, bar=False)
    printer.feed("first\nsecond\n")
    printer.catch_up("another log entirely\nwith more lines than were fed\n")
    printer.catch_up("first\n")  # shorter than what was fed
    printer.close()
    assert out.getvalue().splitlines() == ["first", "second"]


def test_a_traceback_is_one_note_and_the_jobs_last_line_stays():
    """The job's own traceback between its markers, and a worker's that Ray forwards, coloured and
    prefixed: each is one note; every other line passes through."""
    worker = "\x1b[36m(PoolWorker pid=7, ip=10.0.0.3)\x1b[0m "
    log = "\n".join(
        [
            "raybake: corpus 'c': 1 file(s)",
            f"{worker}Traceback (most recent call last):",
            f'{worker}  File "w.py", line 1, in f',
            f"{worker}OSError: worker",
            "",
            "The above exception was the direct cause of the following exception:",
            "",
            "Traceback (most recent call last):",
            '  File "x.py", line 2',
            "RuntimeError: chained",
            "raybake-traceback-begin",
            "Traceback (most recent call last):",
            "ActorDiedError: The actor died because of an error raised in its creation task",
            '  File "y.py", line 3',
            "OSError: /m is not a valid model identifier",
            "raybake-traceback-end",
            "raybake: error: the model cannot be loaded (...); check --model",
            "",
        ]
    )
    out = io.StringIO()
    printer = LogPrinter(out, bar=False)
    printer.feed(log)
    printer.close()
    note = "(a traceback: `invoke logs --job ID` shows it)"
    assert out.getvalue().splitlines() == [
        "raybake: corpus 'c': 1 file(s)",
        note,
        note,
        "raybake: error: the model cannot be loaded (...); check --model",
    ]
