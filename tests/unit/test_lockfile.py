"""The hash locks are current: every pin of their inputs locked at that version, with hashes."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from raybake.versions import ROOT, pins
from tools import lockfile


@pytest.mark.parametrize("lock", lockfile.LOCKS, ids=lambda lk: lk.name)
def test_the_lock_is_current(lock: lockfile.Lock):
    assert lockfile.stale(lock) == []


def copy(lock: lockfile.Lock, tmp_path: Path) -> lockfile.Lock:
    for name in ("requirements.txt", lock.source.name, lock.lock.name):
        shutil.copy(ROOT / name, tmp_path / name)
    return dataclasses.replace(lock, source=tmp_path / lock.source.name, lock=tmp_path / lock.lock.name)


def test_a_pin_bumped_without_a_new_lock_is_stale(tmp_path: Path):
    lock = copy(lockfile.CLIENT, tmp_path)
    lock.source.write_text(lock.source.read_text().replace("invoke==3.0.3", "invoke==3.0.4"))
    assert lockfile.stale(lock) == ["requirements-client.lock: invoke==3.0.4 is locked as 3.0.3"]


def test_a_lock_without_hashes_or_naming_an_index_is_stale(tmp_path: Path):
    lock = copy(lockfile.CLIENT, tmp_path)
    text = lock.lock.read_text()
    first = text.index("invoke==3.0.3")
    end = text.index("# via", first)
    lock.lock.write_text(
        "--extra-index-url file:///opt/pypi/simple\n" + text[:first] + "invoke==3.0.3\n    " + text[end:]
    )
    assert lockfile.stale(lock) == [
        "requirements-client.lock: invoke==3.0.3 has no hash",
        "requirements-client.lock: the lock names an index or wheel folder: '--extra-index-url file:///opt/pypi/simple'",
    ]


def test_the_image_lock_follows_requirements_txt_but_torch(tmp_path: Path):
    lock = copy(lockfile.IMAGE, tmp_path)
    assert "torch" not in lockfile.inputs(lock) and pins()["ray"] == lockfile.inputs(lock)["ray"]
    lock.source.write_text(lock.source.read_text().replace(f"ray[default]=={pins()['ray']}", "ray[default]==9.9.9"))
    assert lockfile.stale(lock) == [f"requirements.lock: ray==9.9.9 is locked as {pins()['ray']}"]
    # torch comes from its own index: locked here it would be installed from PyPI's, beside it.
    lock.lock.write_text(lock.lock.read_text() + f"torch=={pins()['torch']} \\\n    --hash=sha256:{'0' * 64}\n")
    assert "requirements.lock: torch comes from its own index, not this lock" in lockfile.stale(lock)


def test_the_pip_compile_input_of_the_image_lock_has_no_torch():
    assert lockfile.compile_command(lockfile.IMAGE)[-1] == "-"
    assert "torch" not in lockfile.image_input() and "transformers==" in lockfile.image_input()


def test_the_image_lock_leaves_out_torch_and_what_only_torch_needs():
    """torch comes in by sentence-transformers; it and its CUDA wheels come from torch's own index."""
    text = (
        "nvidia-cublas==1 \\\n    --hash=sha256:a\n    # via\n    #   nvidia-cusolver\n    #   torch\n"
        "nvidia-cusolver==1 \\\n    --hash=sha256:b\n    # via torch\n"
        "numpy==2 \\\n    --hash=sha256:c\n    # via\n    #   -r requirements.txt\n    #   torch\n"
        "sentence-transformers==6 \\\n    --hash=sha256:d\n    # via -r requirements.txt\n"
        "torch==2 \\\n    --hash=sha256:e\n    # via sentence-transformers\n"
    )
    kept = lockfile.without_own_index(text)
    assert [line.split("==")[0] for line in kept.splitlines() if "==" in line] == ["numpy", "sentence-transformers"]
