"""The wheelhouse (docker/wheelhouse/): wheels an image build installs instead of downloading them.

It is served to the build on the host's loopback for the build's duration (the build runs with
--network host) rather than copied into the build context: a copied wheel stays in a layer of
the image even after pip has installed it, and a 190 MB torch wheel would then ship twice.

Only the variant's wheels are served. pip ranks a local version above the plain one
(`2.13.0+cpu` > `2.13.0`), so a CPU torch wheel offered to a cuda build would win over the
index's CUDA build; a cuda build never sees a `+cpu` wheel, and a cpu build never sees a
`+cu...`/`+rocm...` one.
"""

from __future__ import annotations

import contextlib
import errno
import html
import http.server
import shutil
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from raybake import console
from raybake.errors import ExitCode, RaybakeError
from raybake.versions import ROOT

FOLDER = ROOT / "docker" / "wheelhouse"
# Local version labels of accelerator builds (PyTorch's cu128, rocm6.4, ...); +cpu is the CPU one.
ACCELERATOR_LABELS = ("cu", "rocm", "xpu")


def wheel_variant(name: str) -> str | None:
    """cuda, cpu or None (no accelerator in the local version: fits every variant)."""
    try:
        _, version, _, _ = parse_wheel_filename(name)
    except InvalidWheelFilename:
        raise RaybakeError(f"{name!r} in the wheelhouse is not a wheel file name", ExitCode.REFUSED) from None
    local = (version.local or "").lower()
    if local == "cpu":
        return "cpu"
    if local.startswith(ACCELERATOR_LABELS):
        return "cuda"
    return None


def select(variant: str, folder: Path = FOLDER) -> list[Path]:
    """The wheels a build of `variant` may install, sorted by name (they go into the image hash)."""
    if not folder.is_dir():
        return []
    return sorted(
        (p for p in folder.glob("*.whl") if wheel_variant(p.name) in (None, variant)),
        key=lambda p: p.name,
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    """A flat find-links page and the wheels it names; nothing else on the host is reachable."""

    wheels: ClassVar[dict[str, Path]] = {}

    def do_GET(self) -> None:
        name = urllib.parse.unquote(self.path.lstrip("/"))
        if name == "":
            links = "".join(f'<a href="{urllib.parse.quote(n)}">{html.escape(n)}</a>\n' for n in sorted(self.wheels))
            self._send(f"<html><body>\n{links}</body></html>\n".encode(), "text/html")
        elif name in self.wheels:
            path = self.wheels[name]
            self._head(path.stat().st_size, "application/octet-stream")
            with path.open("rb") as wheel:
                shutil.copyfileobj(wheel, self.wfile)
        else:
            self.send_error(404)

    def _send(self, body: bytes, kind: str) -> None:
        self._head(len(body), kind)
        self.wfile.write(body)

    def _head(self, length: int, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pip reports what it installs."""


@contextlib.contextmanager
def serve(wheels: Sequence[Path], *, port: int) -> Iterator[str]:
    """A find-links URL on 127.0.0.1 serving `wheels` while the block runs; "" when there are none.

    The port is fixed by a setting because the URL is a build argument, and the classic builder
    keys a RUN's cache on it: a new port would rebuild the torch layer. A busy port falls back
    to any free one, at that cost, rather than failing the build.
    """
    if not wheels:
        yield ""
        return
    handler = type("WheelhouseHandler", (_Handler,), {"wheels": {p.name: p for p in wheels}})
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        console.say(
            f"wheelhouse port {port} is busy, serving on {server.server_port}: "
            "cached layers from torch on are not reused"
        )
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
