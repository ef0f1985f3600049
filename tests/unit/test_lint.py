"""invoke dev.lint: which linters run on which tree, and that each can fail."""

from __future__ import annotations

import shutil
from pathlib import Path

from tools import lint

GOOD_DOCKERFILE = 'FROM debian:bookworm-slim@sha256:{}\nUSER 1000\nCMD ["python3"]\n'.format("0" * 64)


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "ok.py").write_text('"""Clean."""\n')
    return tmp_path


def test_linters_follow_the_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert list(lint.lint_commands(root)) == ["ruff check", "ruff format"]
    (root / "docker").mkdir()
    (root / "docker" / "Dockerfile").write_text(GOOD_DOCKERFILE)
    (root / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(lint.versions.ROOT / ".github" / "workflows" / "ci.yml", root / ".github" / "workflows")
    commands = lint.lint_commands(root)
    assert list(commands) == ["ruff check", "ruff format", "hadolint", "actionlint", "zizmor"]
    assert commands["hadolint"][-1] == "docker/Dockerfile"
    assert commands["actionlint"][-1] == commands["zizmor"][-1] == ".github/workflows/ci.yml"
    # Offline, and with no configuration of the tree's own: nothing ignored that the tree did not say.
    assert "--offline" in commands["zizmor"] and "--no-config" in commands["zizmor"]


def test_clean_tree_passes(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "docker").mkdir()
    (root / "docker" / "Dockerfile").write_text(GOOD_DOCKERFILE)
    assert lint.run(root) == []


def test_each_linter_can_fail(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "bad.py").write_text("import os\nx=1\n")
    (root / "docker").mkdir()
    (root / "docker" / "Dockerfile").write_text("FROM ubuntu:latest\nRUN apt-get install curl\n")
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "w.yml").write_text("on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n")
    failed = lint.run(root)
    assert failed[:5] == ["ruff check", "ruff format", "hadolint", "actionlint", "zizmor"]
    assert failed[5].startswith("workflow rules")


def test_mypy_runs_where_pyproject_asks_for_it_and_fails_on_a_type_error(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "pyproject.toml").write_text('[tool.mypy]\nfiles = ["pkg"]\ndisallow_untyped_defs = true\n')
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("def half(n: int) -> int:\n    return n // 2\n")
    assert "mypy" in lint.lint_commands(root)
    assert lint.run(root) == []
    # Another size, not only other bytes: mypy's cache trusts a file whose size and mtime (to the
    # second) are unchanged, and both writes may land in the same second.
    (root / "pkg" / "__init__.py").write_text("def half(n: int) -> str:\n    return n // 2  # not a str\n")
    assert lint.run(root) == ["mypy"]
