"""write_private: a file only this user reads, whole or not at all, whatever was there before."""

from __future__ import annotations

import stat

from raybake.private import write_private


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_file_is_0600_in_a_0700_folder_and_replaces_a_looser_one(tmp_path):
    path = tmp_path / "secret" / "ray.token"
    write_private(path, "first")
    assert (path.read_text(), _mode(path), _mode(path.parent)) == ("first", 0o600, 0o700)
    path.chmod(0o644)
    write_private(path, "second")
    assert (path.read_text(), _mode(path)) == ("second", 0o600)
    assert [p.name for p in path.parent.iterdir()] == ["ray.token"]  # no temporary file stays
