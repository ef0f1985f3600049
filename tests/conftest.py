"""Shared fixtures. Service-backed tiers (ray, docker) are marked by their directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from noskip import pytest_make_collect_report, pytest_runtest_makereport  # noqa: E402, F401 - hooks
from raycluster import RayHead, start_head  # noqa: E402

TIER_MARKS = {"ray": pytest.mark.ray, "docker": pytest.mark.docker, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items):
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if tier in TIER_MARKS:
            item.add_marker(TIER_MARKS[tier])


@pytest.fixture(scope="session")
def ray_head() -> RayHead:
    """A real local Ray cluster (2 CPUs, token auth) shared by the session's Ray tests."""
    head = start_head(num_cpus=2, auth_mode="token")
    yield head
    head.stop()
