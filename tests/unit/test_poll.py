"""raybake.poll: the one wait loop: it returns the first good answer, and gives up on time."""

from __future__ import annotations

import time

import pytest

from raybake import poll
from raybake.errors import ExitCode, RaybakeError


def test_until_returns_the_first_answer_that_is_done():
    answers = iter([1, 2, 3, 4])
    assert poll.until(lambda: next(answers), done=lambda n: n >= 3, every_s=0) == 3


def test_first_waits_through_none_and_never_asks_again_after_an_answer():
    asked = []

    def ask():
        asked.append(1)
        return "ready" if len(asked) == 3 else None

    assert poll.first(ask, every_s=0) == "ready" and len(asked) == 3


def test_it_gives_up_with_the_callers_error_once_the_time_is_spent():
    started = time.monotonic()
    with pytest.raises(RaybakeError, match="still not there") as raised:
        poll.until(
            lambda: False,
            every_s=0.01,
            within_s=0.1,
            gave_up=lambda: RaybakeError("still not there", ExitCode.UNREACHABLE),
        )
    assert raised.value.code == ExitCode.UNREACHABLE
    assert 0.1 <= time.monotonic() - started < 5
