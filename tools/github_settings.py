"""The GitHub settings the workflows' security rests on, read back through the REST API.

The workflow files say which environment a job uses; only the repository's settings say that
the environment has reviewers, which branches or tags may deploy to it, where the secrets live,
who may push a release tag, whose fork pull requests run without approval and whether an
approval survives new commits. A setting missing there fails open, silently. So `invoke
ci.github-settings` reads them and lists what is missing (docs/github-actions.md, "Threat model").
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raybake.errors import ExitCode, RaybakeError
from tools.gha import api_request

# GET PATH -> (HTTP status, parsed JSON body).
Fetch = Callable[[str], tuple[int, Any]]


DEFAULT_BRANCH = "main"
RELEASE_TAGS = "v*"


@dataclass(frozen=True)
class Environment:
    name: str
    # Why it must be gated, said when it is not.
    guards: str
    # The secrets that must live in it, and never at the repository level.
    secrets: tuple[str, ...] = ()
    # Whether a person must approve each run (image builds on main need no one: main is reviewed).
    reviewed: bool = True
    # The only refs that may deploy to it: (type, name pattern) as deployment-branch-policies lists them.
    deploys_from: frozenset[tuple[str, str]] = frozenset({("branch", DEFAULT_BRANCH)})


ENVIRONMENTS = (
    Environment("production", "dispatches against the production cluster (submit.yml)", ("RAYBAKE_KUBECONFIG",)),
    Environment(
        "pr-trial", "pull requests' trial runs in the sandbox namespace (pr-trial.yml)", ("RAYBAKE_KUBECONFIG",)
    ),
    Environment("image", "builds main's images (image.yml)", reviewed=False),
    Environment(
        "release", "publishes release images (image.yml on `v*` tags)", deploys_from=frozenset({("tag", RELEASE_TAGS)})
    ),
)
# Secrets that only environments may hold: a repository or organization secret is every workflow's.
RAY_SECRETS = ("RAY_JOB_URL", "RAY_AUTH_TOKEN")
# Tag rules a release needs: who may create, move or delete a `v*` tag.
TAG_RULES = ("creation", "update", "deletion")
FORK_APPROVAL = "all_external_contributors"


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
    if env.reviewed and not reviewers.get("reviewers"):
        missing.append(f"environment {env.name!r} has no required reviewers; it {env.guards}")
    elif env.reviewed and not reviewers.get("prevent_self_review"):
        missing.append(f"environment {env.name!r} lets the person who started a run approve it (prevent self-review)")
    if found.get("can_admins_bypass", True):
        missing.append(f"environment {env.name!r} lets administrators bypass its protection rules")
    allowed = " and ".join(f"{kind} {name!r}" for kind, name in sorted(env.deploys_from)) + " only"
    policy = found.get("deployment_branch_policy")
    if policy is None:
        missing.append(f"environment {env.name!r} accepts deployments from any branch or tag; allow {allowed}")
    elif policy.get("custom_branch_policies"):
        listed = (_get(fetch, f"/repos/{repo}/environments/{env.name}/deployment-branch-policies") or {}).get(
            "branch_policies", []
        )
        refs = {(p.get("type", "branch"), p.get("name")) for p in listed}
        if refs != env.deploys_from:
            shown = ", ".join(f"{kind} {name!r}" for kind, name in sorted(refs)) or "nothing"
            missing.append(f"environment {env.name!r} deploys from {shown}; allow {allowed}")
    elif env.deploys_from != {("branch", DEFAULT_BRANCH)}:
        missing.append(f"environment {env.name!r} deploys from protected branches; allow {allowed}")
    secrets = {
        s["name"] for s in (_get(fetch, f"/repos/{repo}/environments/{env.name}/secrets") or {}).get("secrets", [])
    }
    missing += [f"environment {env.name!r} has no secret {name!r}" for name in env.secrets if name not in secrets]
    return missing


def _tag_rulesets(fetch: Fetch, repo: str) -> list[str]:
    """An active tag ruleset over `v*` that restricts creating, moving and deleting those tags.

    Without it anyone with write access can push a release tag on any commit, and image.yml
    publishes it."""
    wanted = f"refs/tags/{RELEASE_TAGS}"
    for summary in _get(fetch, f"/repos/{repo}/rulesets?includes_parents=true") or []:
        if summary.get("target") != "tag" or summary.get("enforcement") != "active":
            continue
        ruleset = _get(fetch, f"/repos/{repo}/rulesets/{summary['id']}") or {}
        include = ((ruleset.get("conditions") or {}).get("ref_name") or {}).get("include") or []
        types = {rule.get("type") for rule in ruleset.get("rules") or []}
        if (wanted in include or "~ALL" in include) and set(TAG_RULES) <= types:
            return []
    return [
        f"no active tag ruleset restricts {', '.join(TAG_RULES)} of {wanted!r}: anyone with write access "
        "can publish a release (Settings > Rules > Rulesets)"
    ]


def check(fetch: Fetch, repo: str) -> list[str]:
    """What is missing from the settings the workflows rely on; empty when all are in place."""
    missing = [m for env in ENVIRONMENTS for m in _environment(fetch, repo, env)]
    kept = {s for env in ENVIRONMENTS for s in env.secrets} | set(RAY_SECRETS)
    for where, path in (("a repository", "actions/secrets"), ("an organization", "actions/organization-secrets")):
        shared = {s["name"] for s in (_get(fetch, f"/repos/{repo}/{path}") or {}).get("secrets", [])}
        for name in sorted(shared & kept):
            missing.append(
                f"secret {name!r} is {where} secret, readable by every workflow; keep it in its environments"
            )
    missing += _tag_rulesets(fetch, repo)
    approval = _get(fetch, f"/repos/{repo}/actions/permissions/fork-pr-contributor-approval") or {}
    if approval.get("approval_policy") != FORK_APPROVAL:
        missing.append(
            f"fork pull requests' workflows run without approval for some outside contributors "
            f"({approval.get('approval_policy')!r}); require it for {FORK_APPROVAL!r} (Settings > Actions > General)"
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
    elif not reviews.get("dismiss_stale_reviews"):
        missing.append(
            f"branch {DEFAULT_BRANCH!r} keeps an approval after new commits (dismiss stale reviews): "
            "an approved pull request could merge code nobody reviewed"
        )
    return missing
