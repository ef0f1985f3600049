"""requirements-client.lock is current: every pin of its inputs locked at that version, with hashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raybake.ci import lockfile
from raybake.versions import ROOT


def test_the_lock_is_current():
    assert lockfile.stale() == []


@pytest.fixture()
def copies(tmp_path: Path, monkeypatch) -> Path:
    for name in ("requirements.txt", "requirements-client.in", "requirements-client.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.setattr(lockfile, "SOURCE", tmp_path / "requirements-client.in")
    monkeypatch.setattr(lockfile, "LOCK", tmp_path / "requirements-client.lock")
    return tmp_path


def test_a_pin_bumped_without_a_new_lock_is_stale(copies: Path):
    source = copies / "requirements-client.in"
    source.write_text(source.read_text().replace("invoke==3.0.3", "invoke==3.0.4"))
    assert lockfile.stale() == ["invoke==3.0.4 is locked as 3.0.3"]


def test_a_lock_without_hashes_or_naming_an_index_is_stale(copies: Path):
    lock = copies / "requirements-client.lock"
    text = lock.read_text()
    first = text.index("invoke==3.0.3")
    end = text.index("# via", first)
    lock.write_text("--extra-index-url file:///opt/pypi/simple\n" + text[:first] + "invoke==3.0.3\n    " + text[end:])
    assert lockfile.stale() == [
        "invoke==3.0.3 has no hash",
        "the lock names an index or wheel folder: '--extra-index-url file:///opt/pypi/simple'",
    ]
