"""A local TCP port relayed to a pod's port: `kubectl port-forward` without kubectl.

The Kubernetes client's portforward gives one socket per stream; Ray's job client wants a URL
and opens connections of its own (HTTP, then a websocket for the logs). So a loopback listener
hands each accepted connection a fresh stream from `connect` and pumps bytes both ways.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

CHUNK = 64 * 1024


def pump(source: Any, sink: Any) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        # Half-close: the other direction may still carry the rest of a response.
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class Forward:
    """Listens on 127.0.0.1:<free port>; every connection is relayed through `connect()`."""

    def __init__(self, connect: Callable[[], Any], *, host: str = "127.0.0.1") -> None:
        self._connect = connect
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._open: set[Any] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name=f"raybake-forward-{self.port}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def closed(self) -> bool:
        return self._closed

    def _accept(self) -> None:
        while True:
            try:
                local, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                remote = self._connect()
            except Exception:  # noqa: BLE001 - a failed stream refuses this connection, not the listener
                local.close()
                continue
            with self._lock:
                self._open.update((local, remote))
            threading.Thread(target=self._relay, args=(local, remote), daemon=True).start()

    def _relay(self, local: Any, remote: Any) -> None:
        back = threading.Thread(target=pump, args=(remote, local), daemon=True)
        back.start()
        pump(local, remote)
        back.join()
        with self._lock:
            self._open.difference_update((local, remote))
        for s in (local, remote):
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._listener.close()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.close()
            self._open.clear()

    def __enter__(self) -> Forward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
