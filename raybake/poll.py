"""Waiting for something to happen: the one loop that asks, sleeps and gives up on time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from raybake.errors import RaybakeError

T = TypeVar("T")


def first(
    ask: Callable[[], T | None],
    *,
    every_s: float,
    within_s: float | None = None,
    gave_up: Callable[[], RaybakeError] | None = None,
) -> T:
    """Call `ask` every `every_s` seconds until it answers something other than None; return that.

    With `within_s`, raise `gave_up()` once that long has passed without an answer.
    """
    deadline = None if within_s is None else time.monotonic() + within_s
    while True:
        answer = ask()
        if answer is not None:
            return answer
        if deadline is not None and time.monotonic() > deadline:
            raise gave_up() if gave_up else RaybakeError(f"gave up waiting after {within_s:.0f}s")
        time.sleep(every_s)


def until(
    ask: Callable[[], T],
    *,
    done: Callable[[T], bool] = bool,
    every_s: float,
    within_s: float | None = None,
    gave_up: Callable[[], RaybakeError] | None = None,
) -> T:
    """Call `ask` until `done(answer)`; return that answer. Timing as first()."""

    def answered() -> T | None:
        answer = ask()
        return answer if done(answer) else None

    return first(answered, every_s=every_s, within_s=within_s, gave_up=gave_up)
