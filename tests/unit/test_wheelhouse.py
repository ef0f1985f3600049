"""The wheelhouse: only the variant's wheels, served on loopback while a build runs."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from raybake.errors import RaybakeError
from raybake.image import wheelhouse

CPU = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
CUDA = "torch-2.13.0+cu128-cp311-cp311-manylinux_2_28_x86_64.whl"
PLAIN = "tokenizers-0.22.1-cp39-abi3-manylinux_2_17_x86_64.whl"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in (CPU, CUDA, PLAIN):
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / ".gitignore").write_text("*.whl\n")
    return tmp_path


def test_a_cuda_build_never_sees_a_cpu_wheel(folder: Path):
    """pip ranks 2.13.0+cpu above the index's 2.13.0: offered, the CPU wheel would win."""
    assert [p.name for p in wheelhouse.select("cuda", folder)] == [PLAIN, CUDA]
    assert [p.name for p in wheelhouse.select("cpu", folder)] == [PLAIN, CPU]


def test_a_file_that_is_no_wheel_is_refused(folder: Path):
    (folder / "torch.whl").write_bytes(b"x")
    with pytest.raises(RaybakeError, match="'torch.whl'"):
        wheelhouse.select("cpu", folder)


def test_no_folder_or_no_wheels_serve_nothing(tmp_path: Path):
    assert wheelhouse.select("cpu", tmp_path / "absent") == []
    with wheelhouse.serve([], port=1) as url:
        assert url == ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_on_loopback_only_the_selected_wheels(folder: Path):
    port = free_port()
    with wheelhouse.serve(wheelhouse.select("cuda", folder), port=port) as url:
        assert url == f"http://127.0.0.1:{port}/"
        page = urllib.request.urlopen(url).read().decode()
        assert "cu128" in page and PLAIN in page and "cpu" not in page
        assert urllib.request.urlopen(url + CUDA.replace("+", "%2B")).read() == CUDA.encode()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + CPU.replace("+", "%2B"))
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_a_busy_port_falls_back_to_another(folder: Path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with wheelhouse.serve(wheelhouse.select("cpu", folder), port=port) as url:
            assert url.startswith("http://127.0.0.1:") and f":{port}/" not in url
            assert urllib.request.urlopen(url).status == 200
    assert "is busy" in capsys.readouterr().out
