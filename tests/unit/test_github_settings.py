"""The GitHub settings check against recorded REST API responses (tests/unit/fixtures/github).

Each fixture has the shape GitHub documents for its endpoint; a test changes the one field or
response that a missing setting changes, and the check must name it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from raybake.ci import github_settings
from raybake.errors import RaybakeError

FIXTURES = Path(__file__).parent / "fixtures" / "github"
REPO = "octo-org/raybake"


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def responses() -> dict[str, tuple[int, Any]]:
    """Every endpoint the check reads, as a well-configured repository answers it."""
    answers = {
        f"/repos/{REPO}/actions/secrets": (200, recorded("repository-secrets")),
        f"/repos/{REPO}/actions/permissions/workflow": (200, recorded("workflow-permissions")),
        f"/repos/{REPO}/branches/main/protection": (200, recorded("branch-protection")),
    }
    for env in ("production", "pr-trial"):
        answers[f"/repos/{REPO}/environments/{env}"] = (200, {**recorded("environment"), "name": env})
        answers[f"/repos/{REPO}/environments/{env}/deployment-branch-policies"] = (
            200,
            recorded("deployment-branch-policies"),
        )
        answers[f"/repos/{REPO}/environments/{env}/secrets"] = (200, recorded("environment-secrets"))
    return answers


def run(answers: dict[str, tuple[int, Any]]) -> list[str]:
    return github_settings.check(lambda path: copy.deepcopy(answers[path]), REPO)


def test_a_well_configured_repository_misses_nothing():
    assert run(responses()) == []


def _rule(answers, env: str, kind: str) -> dict:
    body = answers[f"/repos/{REPO}/environments/{env}"][1]
    return next(r for r in body["protection_rules"] if r["type"] == kind)


def _no_reviewers(a):
    a[f"/repos/{REPO}/environments/pr-trial"][1]["protection_rules"] = [
        r for r in a[f"/repos/{REPO}/environments/pr-trial"][1]["protection_rules"] if r["type"] != "required_reviewers"
    ]


CASES = {
    "environment 'pr-trial' does not exist": lambda a: a.update(
        {f"/repos/{REPO}/environments/pr-trial": (404, recorded("not-found"))}
    ),
    "environment 'pr-trial' has no required reviewers": _no_reviewers,
    "environment 'production' lets the person who started a run approve it": lambda a: _rule(
        a, "production", "required_reviewers"
    ).update(prevent_self_review=False),
    "environment 'production' lets administrators bypass": lambda a: a[f"/repos/{REPO}/environments/production"][
        1
    ].update(can_admins_bypass=True),
    "environment 'production' accepts deployments from any branch": lambda a: a[
        f"/repos/{REPO}/environments/production"
    ][1].update(deployment_branch_policy=None),
    "environment 'pr-trial' deploys from branches ['feature/*', 'main']": lambda a: a[
        f"/repos/{REPO}/environments/pr-trial/deployment-branch-policies"
    ][1]["branch_policies"].append({"id": 2, "node_id": "x", "name": "feature/*", "type": "branch"}),
    "environment 'production' has no secret 'RAYBAKE_KUBECONFIG'": lambda a: a[
        f"/repos/{REPO}/environments/production/secrets"
    ][1].update(total_count=0, secrets=[]),
    "secret 'RAYBAKE_KUBECONFIG' is a repository secret": lambda a: a[f"/repos/{REPO}/actions/secrets"][1][
        "secrets"
    ].append(
        {"name": "RAYBAKE_KUBECONFIG", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
    ),
    "default GITHUB_TOKEN permissions are not read-only": lambda a: a[f"/repos/{REPO}/actions/permissions/workflow"][
        1
    ].update(default_workflow_permissions="write"),
    "GitHub Actions may approve pull requests": lambda a: a[f"/repos/{REPO}/actions/permissions/workflow"][1].update(
        can_approve_pull_request_reviews=True
    ),
    "branch 'main' is not protected": lambda a: a.update(
        {f"/repos/{REPO}/branches/main/protection": (404, recorded("not-found"))}
    ),
    "branch 'main' merges without an approving review": lambda a: a[f"/repos/{REPO}/branches/main/protection"][1].pop(
        "required_pull_request_reviews"
    ),
}


@pytest.mark.parametrize("expected", sorted(CASES))
def test_each_missing_setting_is_named(expected):
    answers = responses()
    CASES[expected](answers)
    missing = run(answers)
    assert any(expected in m for m in missing), missing
    assert len(missing) == 1, missing


def test_a_token_that_cannot_read_the_settings_is_told_so():
    answers = responses()
    answers[f"/repos/{REPO}/actions/secrets"] = (403, {"message": "Resource not accessible by integration"})
    with pytest.raises(RaybakeError, match="must be a repository admin's"):
        run(answers)
