"""The GitHub settings the workflows' security rests on, read back through the REST API.

The workflow files say which environment a job uses; only the repository's settings say that
the environment has reviewers, which branches may deploy to it and where the secrets live. A
setting missing there fails open, silently. So `invoke github-settings` reads them and lists
what is missing (docs/github-actions.md, "What the project relies on").
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raybake.ci.gha import api_request
from raybake.errors import ExitCode, RaybakeError

# GET PATH -> (HTTP status, parsed JSON body).
Fetch = Callable[[str], tuple[int, Any]]


@dataclass(frozen=True)
class Environment:
    name: str
    # Why it must be gated, said when it is not.
    guards: str
    # The secrets that must live in it, and never at the repository level.
    secrets: tuple[str, ...]


ENVIRONMENTS = (
    Environment("production", "dispatches against the production cluster (submit.yml)", ("RAYBAKE_KUBECONFIG",)),
    Environment(
        "pr-trial", "pull requests' trial runs in the sandbox namespace (pr-trial.yml)", ("RAYBAKE_KUBECONFIG",)
    ),
)
DEFAULT_BRANCH = "main"


def api_fetch(*, token: str, api_url: str = "https://api.github.com") -> Fetch:
    """GETs against the GitHub REST API with a token (an admin's: secrets and protection are read)."""

    def fetch(path: str) -> tuple[int, Any]:
        request = api_request("GET", f"{api_url.rstrip('/')}{path}", token)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except urllib.error.URLError as exc:
            raise RaybakeError(f"GitHub API {api_url!r} unreachable: {exc.reason}", ExitCode.UNREACHABLE) from None

    return fetch


def _get(fetch: Fetch, path: str) -> Any:
    status, body = fetch(path)
    if status == 404:
        return None
    if status in (401, 403):
        raise RaybakeError(
            f"GitHub API GET {path!r} answered {status}: the token must be a repository admin's", ExitCode.UNREACHABLE
        )
    if status != 200:
        raise RaybakeError(f"GitHub API GET {path!r} answered {status}", ExitCode.UNREACHABLE)
    return body


def _environment(fetch: Fetch, repo: str, env: Environment) -> list[str]:
    found = _get(fetch, f"/repos/{repo}/environments/{env.name}")
    if found is None:
        return [f"environment {env.name!r} does not exist; it {env.guards}"]
    missing = []
    rules = {rule.get("type"): rule for rule in found.get("protection_rules") or []}
    reviewers = rules.get("required_reviewers") or {}
    if not reviewers.get("reviewers"):
        missing.append(f"environment {env.name!r} has no required reviewers; it {env.guards}")
    elif not reviewers.get("prevent_self_review"):
        missing.append(f"environment {env.name!r} lets the person who started a run approve it (prevent self-review)")
    if found.get("can_admins_bypass", True):
        missing.append(f"environment {env.name!r} lets administrators bypass its protection rules")
    policy = found.get("deployment_branch_policy")
    if policy is None:
        missing.append(f"environment {env.name!r} accepts deployments from any branch; allow {DEFAULT_BRANCH!r} only")
    elif policy.get("custom_branch_policies"):
        names = {
            p.get("name")
            for p in (_get(fetch, f"/repos/{repo}/environments/{env.name}/deployment-branch-policies") or {}).get(
                "branch_policies", []
            )
            if p.get("type", "branch") == "branch"
        }
        if names != {DEFAULT_BRANCH}:
            missing.append(
                f"environment {env.name!r} deploys from branches {sorted(names)}; allow {DEFAULT_BRANCH!r} only"
            )
    secrets = {
        s["name"] for s in (_get(fetch, f"/repos/{repo}/environments/{env.name}/secrets") or {}).get("secrets", [])
    }
    missing += [f"environment {env.name!r} has no secret {name!r}" for name in env.secrets if name not in secrets]
    return missing


def check(fetch: Fetch, repo: str) -> list[str]:
    """What is missing from the settings the workflows rely on; empty when all are in place."""
    missing = [m for env in ENVIRONMENTS for m in _environment(fetch, repo, env)]
    shared = {s["name"] for s in (_get(fetch, f"/repos/{repo}/actions/secrets") or {}).get("secrets", [])}
    for name in sorted(shared & {s for env in ENVIRONMENTS for s in env.secrets}):
        missing.append(
            f"secret {name!r} is a repository secret, readable by every workflow; keep it in its environments"
        )
    workflow = _get(fetch, f"/repos/{repo}/actions/permissions/workflow") or {}
    if workflow.get("default_workflow_permissions") != "read":
        missing.append("the default GITHUB_TOKEN permissions are not read-only (Settings > Actions > General)")
    if workflow.get("can_approve_pull_request_reviews"):
        missing.append("GitHub Actions may approve pull requests (Settings > Actions > General)")
    protection = _get(fetch, f"/repos/{repo}/branches/{DEFAULT_BRANCH}/protection")
    reviews = (protection or {}).get("required_pull_request_reviews") or {}
    if protection is None:
        missing.append(f"branch {DEFAULT_BRANCH!r} is not protected: pr-trial.yml and submit.yml run from it")
    elif reviews.get("required_approving_review_count", 0) < 1:
        missing.append(f"branch {DEFAULT_BRANCH!r} merges without an approving review")
    return missing
