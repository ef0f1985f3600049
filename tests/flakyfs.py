"""Corpus files whose stream fails midway, as object stores' streams do: a local filesystem that
wraps what it opens. The unit tests use `FlakyFS` directly; the Ray tests reach `FlakyFileSystem`
by the `flaky://` protocol, through an fsspec entry point on the workers' PYTHONPATH."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from fsspec.implementations.local import LocalFileSystem


class FailingFile:
    """A file whose stream, after `after` lines, raises `error` (or ends, when None) if `fail()`."""

    def __init__(self, f: Any, after: int, error: BaseException | None, fail: Callable[[], bool] = bool) -> None:
        self.f, self.after, self.error, self.fail, self.lines = f, after, error, fail, 0

    def readline(self, limit: int = -1) -> bytes:
        if self.lines >= self.after and self.fail():
            if self.error is None:
                return b""
            raise self.error
        self.lines += 1
        return self.f.readline(limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


class FlakyFS(LocalFileSystem):
    """The local filesystem, whose first `fails` opens fail after `after` lines with `error`."""

    cachable = False

    def __init__(self, *, fails: int, after: int, error: BaseException | None) -> None:
        super().__init__()
        self.fails, self.after, self.error = fails, after, error

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        handle = super()._open(path, mode, **kwargs)
        if self.fails <= 0:
            return handle
        self.fails -= 1
        return FailingFile(handle, self.after, self.error, fail=lambda: True)


def _first_in_the_run() -> bool:
    """True once for the whole run, in whichever process asks first: the file $FLAKY_MARKER is made."""
    try:
        os.close(os.open(os.environ["FLAKY_MARKER"], os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


class FlakyFileSystem(LocalFileSystem):
    """`flaky://PATH`: the first stream of the run times out after 5 lines (an OSError, as s3fs's
    and fsspec's http reads raise them); the driver's check, which reads no lines, is spared."""

    protocol = ("flaky",)

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return str(super()._strip_protocol(str(path).removeprefix("flaky://")))

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        error = TimeoutError("read timed out (injected)")
        return FailingFile(super()._open(path, mode, **kwargs), 5, error, fail=_first_in_the_run)
