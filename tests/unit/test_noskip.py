"""tests/noskip.py: a skip where tests must run fails, with its reason; elsewhere it stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
SKIPPING = """
import pytest

def test_skips():
    pytest.skip("the machine lacks a thing")

@pytest.mark.skipif(True, reason="decided at import")
def test_skipif():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
"""


def run_pytest(folder: Path, *, no_skips: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAYBAKE_NO_SKIPS"}
    if no_skips:
        env["RAYBAKE_NO_SKIPS"] = "1"
    env["PYTHONPATH"] = str(TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "noskip", "-ra", "-p", "no:cacheprovider", "--rootdir", folder, folder],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("where", ["unit", "ray"])
def test_a_skip_in_the_unit_or_ray_tier_fails_with_its_reason(tmp_path, where):
    (tmp_path / where).mkdir()
    (tmp_path / where / "test_it.py").write_text(SKIPPING)
    done = run_pytest(tmp_path, no_skips=False)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 xfailed, 1 error" in done.stdout, done.stdout
    assert f"skipped in the {where} tier, which must not skip: Skipped: the machine lacks a thing" in done.stdout
    assert "which must not skip: Skipped: decided at import" in done.stdout


def test_a_module_skipped_at_collection_fails_too(tmp_path):
    (tmp_path / "test_module.py").write_text('import pytest\npytest.skip("no module", allow_module_level=True)\n')
    done = run_pytest(tmp_path, no_skips=False)
    assert done.returncode != 0 and "which must not skip" in done.stdout, done.stdout


def test_the_docker_tier_may_skip_unless_no_tier_may(tmp_path):
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "test_it.py").write_text(SKIPPING)
    allowed = run_pytest(tmp_path, no_skips=False)
    assert allowed.returncode == 0 and "2 skipped, 1 xfailed" in allowed.stdout, allowed.stdout
    assert "SKIPPED [1] docker/test_it.py:5: the machine lacks a thing" in allowed.stdout  # -ra says why
    forbidden = run_pytest(tmp_path, no_skips=True)
    assert forbidden.returncode == 1 and "1 failed, 1 xfailed, 1 error" in forbidden.stdout, forbidden.stdout
    assert "skipped in the docker tier, which must not skip" in forbidden.stdout
