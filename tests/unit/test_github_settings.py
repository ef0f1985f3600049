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

from raybake.errors import RaybakeError
from tools import github_settings

FIXTURES = Path(__file__).parent / "fixtures" / "github"
REPO = "octo-org/raybake"


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def responses() -> dict[str, tuple[int, Any]]:
    """Every endpoint the check reads, as a well-configured repository answers it."""
    answers = {
        f"/repos/{REPO}/actions/secrets": (200, recorded("repository-secrets")),
        f"/repos/{REPO}/actions/organization-secrets": (200, recorded("organization-secrets")),
        f"/repos/{REPO}/actions/permissions/workflow": (200, recorded("workflow-permissions")),
        f"/repos/{REPO}/actions/permissions/fork-pr-contributor-approval": (
            200,
            recorded("fork-pr-contributor-approval"),
        ),
        f"/repos/{REPO}/rulesets?includes_parents=true": (200, recorded("rulesets")),
        f"/repos/{REPO}/rulesets/43": (200, recorded("ruleset-tags")),
        f"/repos/{REPO}/branches/main/protection": (200, recorded("branch-protection")),
    }
    for env in ("production", "pr-trial", "image", "release"):
        answers[f"/repos/{REPO}/environments/{env}"] = (200, {**recorded("environment"), "name": env})
        answers[f"/repos/{REPO}/environments/{env}/deployment-branch-policies"] = (
            200,
            recorded("deployment-tag-policies" if env == "release" else "deployment-branch-policies"),
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
    "environment 'production' accepts deployments from any branch or tag": lambda a: a[
        f"/repos/{REPO}/environments/production"
    ][1].update(deployment_branch_policy=None),
    "environment 'pr-trial' deploys from branch 'feature/*', branch 'main'; allow branch 'main' only": lambda a: a[
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
    # What the supply chain relies on (issue 24): releases, Ray secrets, forks, stale approvals.
    "environment 'release' deploys from branch 'main'; allow tag 'v*' only": lambda a: a.update(
        {
            f"/repos/{REPO}/environments/release/deployment-branch-policies": (
                200,
                recorded("deployment-branch-policies"),
            )
        }
    ),
    "environment 'release' has no required reviewers": lambda a: a[f"/repos/{REPO}/environments/release"][1].update(
        protection_rules=[]
    ),
    "secret 'RAY_AUTH_TOKEN' is a repository secret": lambda a: _shared(a, "secrets", "RAY_AUTH_TOKEN"),
    "secret 'RAY_JOB_URL' is an organization secret": lambda a: _shared(a, "organization-secrets", "RAY_JOB_URL"),
    "no active tag ruleset restricts creation, update, deletion of 'refs/tags/v*'": lambda a: a[
        f"/repos/{REPO}/rulesets/43"
    ][1].update(rules=[{"type": "deletion"}]),
    "no active tag ruleset restricts": lambda a: a[f"/repos/{REPO}/rulesets?includes_parents=true"][1][1].update(
        enforcement="evaluate"
    ),
    "fork pull requests' workflows run without approval for some outside contributors ('first_time_contributors')": (
        lambda a: a[f"/repos/{REPO}/actions/permissions/fork-pr-contributor-approval"][1].update(
            approval_policy="first_time_contributors"
        )
    ),
    "branch 'main' keeps an approval after new commits": lambda a: a[f"/repos/{REPO}/branches/main/protection"][1][
        "required_pull_request_reviews"
    ].update(dismiss_stale_reviews=False),
}


def _shared(answers, path: str, name: str) -> None:
    body = answers[f"/repos/{REPO}/actions/{path}"][1]
    body["secrets"].append({"name": name, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"})
    body["total_count"] += 1


def test_an_environment_that_needs_no_reviewer_passes_without_one():
    """`image` builds main's pushes: main's merges are reviewed, a reviewer per push would add nothing."""
    answers = responses()
    answers[f"/repos/{REPO}/environments/image"][1]["protection_rules"] = []
    assert run(answers) == []


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
