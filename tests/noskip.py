"""A pytest plugin: a skip where the tests must run is a failure, with the skip's reason.

The unit and ray tiers need nothing the repository and its requirements do not bring, so a
skip there hides a missing test, never a missing machine. The docker tier may skip where no
engine can run and the e2e tier where kind is absent, except where RAYBAKE_NO_SKIPS=1 says this
machine has them all (`.ci/run`): there no tier may skip.
"""

from __future__ import annotations

import os

import pytest

NO_SKIPS_ENV = "RAYBAKE_NO_SKIPS"
# Tiers are the directories under tests/; a test outside them counts as unit.
MAY_SKIP = ("docker", "e2e")


def tier(nodeid: str) -> str:
    parts = nodeid.split("::")[0].split("/")
    return next((p for p in parts[:-1] if p in ("ray", *MAY_SKIP)), "unit")


def skip_forbidden(nodeid: str) -> bool:
    return os.environ.get(NO_SKIPS_ENV) == "1" or tier(nodeid) not in MAY_SKIP


def reason(longrepr: object) -> str:
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


def fail_instead(report: pytest.BaseReport) -> None:
    report.longrepr = f"skipped in the {tier(report.nodeid)} tier, which must not skip: {reason(report.longrepr)}"
    report.outcome = "failed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and skip_forbidden(report.nodeid):
        fail_instead(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and skip_forbidden(report.nodeid):
        fail_instead(report)
