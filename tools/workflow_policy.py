"""The project's own rules for its GitHub Actions workflows, checked by `invoke dev.lint` and the unit tests.

actionlint and the workflow JSON schema catch what is malformed; zizmor (.github/zizmor.yml) what
any workflow gets wrong: script injection, unpinned actions, persisted checkout credentials, write
scopes at the top, secrets outside an environment, no concurrency, `pull_request_target`. What
is left here is what only this project means: logic that lives only in YAML, credentials within
reach of a pull request's code, the safe shape of its `workflow_run` trial, jobs that can hang
for six hours, a second copy of a pinned version, a layer cache any branch can write, and a
production job that runs an image main's image.yml did not attest. Conditions are parsed
(tools/expressions.py), never searched as text: `A || true` guards nothing.

The trust model (docs/github-actions.md): a `pull_request` workflow runs the pull request's
code, so it holds nothing (no secrets, no write scope, no environment, no registry login); the
privileged half of a pull request's trial is a `workflow_run` workflow, whose file and checkout
come from the default branch, gated by an environment that is not `production`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raybake import versions
from tools import expressions

WORKFLOWS_DIR = versions.ROOT / ".github" / "workflows"
# The one install a job holding credentials may run: the client, every package hash-locked.
LOCKED_INSTALL = "pip install --require-hashes --no-deps -r requirements-client.lock"

# Commands a `run:` step may hold besides `invoke ...`, each with the reason it cannot be a task.
RUN_EXCEPTIONS = {
    "pip install -r requirements-dev.txt": "bootstrap: invoke itself is installed by this command",
    LOCKED_INSTALL: "bootstrap, hash-locked: the client alone, for jobs that hold credentials",
}
# An action at a commit SHA (zizmor's unpinned-uses requires one), and the release it names.
_SHA_USES = re.compile(r"^\s*-?\s*uses:\s*([^@\s]+)@[0-9a-f]{40}(?P<comment>\s+#\s*v\d[\w.\-]*)?\s*$")
# Where a workflow_run job's condition must require the run it follows to have passed.
RUN_PASSED = "github.event.workflow_run.conclusion == 'success'"
# The step that refuses a trial run started by its pull request's author or a non-writer.
TRIAL_CHECK = "invoke ci.pr-trial-check"
# The step that turns an image reference into the digest main's image.yml attested.
VERIFY_IMAGE = "invoke ci.verify-image"
PRODUCTION = "production"
_STEP_REF = re.compile(r"^\$\{\{\s*steps\.([\w-]+)\.outputs\.ref\s*\}\}$")
_IMAGE_FLAG = re.compile(r"--image[=\s]+\"?\$\{?(\w+)\}?\"?")


@dataclass(frozen=True)
class Problem:
    workflow: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.workflow}: {self.where}: {self.message}"


def load(path: Path) -> dict[str, Any]:
    # PyYAML reads the key `on` as the boolean True (YAML 1.1); give it its name back.
    data = yaml.safe_load(path.read_text()) or {}
    if True in data:
        data["on"] = data.pop(True)
    return data


def triggers(workflow: dict[str, Any]) -> set[str]:
    on = workflow.get("on") or {}
    if isinstance(on, str):
        return {on}
    return set(on)


def commands(script: str) -> Iterator[str]:
    """The commands of a `run:` script: lines joined at `\\`, split at `&&`, comments dropped."""
    joined = re.sub(r"\\\n\s*", "", script)
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            yield part.strip()


def _jobs(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from (workflow.get("jobs") or {}).items()


def _steps(job: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for index, step in enumerate(job.get("steps") or []):
        yield step.get("name") or f"step {index + 1}", step


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def read_contexts(value: Any) -> set[str]:
    """Every context path the `${{ }}` expressions anywhere in `value` read."""
    return {c for text in _strings(value) for node in expressions.embedded(text) for c in expressions.contexts(node)}


def secrets_of(value: Any) -> set[str]:
    """The secrets `value` reads, GITHUB_TOKEN included (its scopes are the job's permissions)."""
    return {c.split(".")[1] for c in read_contexts(value) if c.startswith("secrets.") and c.count(".") == 1}


def _writes(job: dict[str, Any]) -> list[str]:
    permissions = job.get("permissions") or {}
    if isinstance(permissions, str):
        return ["all"] if permissions == "write-all" else []
    return sorted(k for k, v in permissions.items() if v == "write")


def _privileged(job: dict[str, Any]) -> bool:
    return bool(secrets_of(job) - {"GITHUB_TOKEN"} or _writes(job) or job.get("environment"))


def _check_runs(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    for job_id, job in _jobs(workflow):
        for step_name, step in _steps(job):
            script = step.get("run")
            if script is None:
                continue
            for command in commands(script):
                if not command.startswith("invoke ") and command not in RUN_EXCEPTIONS:
                    yield Problem(name, f"{job_id}/{step_name}", f"run: command {command!r} is not an invoke task")


def _check_jobs(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    for job_id, job in _jobs(workflow):
        if not isinstance(job.get("timeout-minutes"), int):
            yield Problem(name, job_id, "no timeout-minutes")
        for step_name, step in _steps(job):
            uses, given = str(step.get("uses", "")), step.get("with") or {}
            if uses.startswith("actions/setup-python@") and given.get("python-version-file") != ".python-version":
                yield Problem(
                    name, f"{job_id}/{step_name}", "setup-python must read .python-version (the one Python pin)"
                )
        for key, value in (job.get("env") or {}).items():
            # A job's name is what a re-run attaches by: an attempt number would start a second job.
            if "NAME" in key and "github.run_attempt" in read_contexts(value):
                yield Problem(
                    name, f"{job_id}/env/{key}", "a job name with github.run_attempt: a re-run starts a second job"
                )


def _check_label_concurrency(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    """A labeled run queues behind its own label only (that there is a group is zizmor's concurrency-limits)."""
    group = (workflow.get("concurrency") or {}).get("group")
    labeled = (
        "labeled" in ((workflow.get("on") or {}).get("pull_request") or {}).get("types", [])
        if isinstance(workflow.get("on"), dict)
        else False
    )
    if group and labeled and "github.event.label.name" not in read_contexts(group):
        yield Problem(
            name,
            "concurrency",
            "a labeled pull_request run's group must depend on github.event.label.name: "
            "otherwise any other label added replaces a queued run",
        )


def _check_secret_scope(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    """Secrets in a step's env only: a workflow's or job's env reaches every step, pip's too."""
    scopes = [("env", workflow.get("env")), *((f"{job_id}/env", job.get("env")) for job_id, job in _jobs(workflow))]
    for where, env in scopes:
        secrets = sorted(secrets_of(env or {}) - {"GITHUB_TOKEN"})
        if secrets:
            yield Problem(name, where, f"secrets {secrets} in a shared env:; give them to the steps that use them")


def _check_pull_requests(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    """A pull_request workflow runs the pull request's code (its file, tasks, requirements): it holds nothing."""
    if "pull_request" not in triggers(workflow):
        return
    for job_id, job in _jobs(workflow):
        held = [
            *(f"secret {s}" for s in sorted(secrets_of(job))),
            *(f"write scope {w}" for w in _writes(job)),
            *([f"environment {job['environment']}"] if job.get("environment") else []),
            *(
                ["a registry login"]
                if any(str(st.get("uses", "")).startswith("docker/login-action@") for _, st in _steps(job))
                else []
            ),
        ]
        if held:
            yield Problem(
                name,
                job_id,
                f"a pull_request workflow runs the pull request's code, whatever `if:` says; it holds "
                f"{', '.join(held)}: build here, run privileged steps in a workflow_run workflow",
            )


def _comment_only(workflow: dict[str, Any], job: dict[str, Any]) -> bool:
    """A job whose one credential is a token that writes pull requests, after a job that ran the trial check.

    It posts what the gated job wrote; asking the environment's reviewers a second time would
    guard nothing more, and keeping that scope out of the gated job narrows both."""
    needs = job.get("needs") or []
    needed = [workflow["jobs"].get(n) or {} for n in ([needs] if isinstance(needs, str) else needs)]
    checked = any(
        c.startswith(TRIAL_CHECK) for other in needed for _, st in _steps(other) for c in commands(st.get("run") or "")
    )
    return (
        checked
        and not job.get("environment")
        and _writes(job) == ["pull-requests"]
        and not secrets_of(job) - {"GITHUB_TOKEN"}
    )


def _check_workflow_runs(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    """A workflow_run job: main's code only, gated, and the trial check before any credential."""
    if "workflow_run" not in triggers(workflow):
        return
    for job_id, job in _jobs(workflow):
        for step_name, step in _steps(job):
            uses, given = str(step.get("uses", "")), step.get("with") or {}
            if uses.startswith("actions/checkout@") and ({"ref", "repository"} & set(given)):
                yield Problem(
                    name, f"{job_id}/{step_name}", "a workflow_run job checks out other code than the default branch's"
                )
            if uses.startswith("docker/login-action@"):
                yield Problem(
                    name,
                    f"{job_id}/{step_name}",
                    "docker/login-action leaves a registry token on disk; pass it to the push step's env",
                )
        if not _privileged(job):
            continue
        if not expressions.requires(str(job.get("if", "true")), RUN_PASSED):
            yield Problem(name, job_id, f"a privileged workflow_run job must require `{RUN_PASSED}` in its if:")
        if job.get("environment") in (None, "production") and not _comment_only(workflow, job):
            yield Problem(
                name, job_id, "a privileged workflow_run job needs an environment of its own (not production)"
            )
        checked = False
        for step_name, step in _steps(job):
            if any(c.startswith(TRIAL_CHECK) for c in commands(step.get("run") or "")):
                checked = True
            elif secrets_of(step) - {"GITHUB_TOKEN"} and not checked:
                yield Problem(name, f"{job_id}/{step_name}", f"credentials before `{TRIAL_CHECK}` refused the run")


def _check_installs(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    """Jobs that hold credentials install the hash-locked client, nothing a linter or test pulls in."""
    for job_id, job in _jobs(workflow):
        if not _privileged(job):
            continue
        for step_name, step in _steps(job):
            for command in commands(step.get("run") or ""):
                if command.startswith("pip ") and command != LOCKED_INSTALL:
                    yield Problem(
                        name,
                        f"{job_id}/{step_name}",
                        f"a job holding credentials installs {command!r}; use `{LOCKED_INSTALL}`",
                    )


def _check_pr_images(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    """A pull request's image and cache live under names main and releases never read."""
    if not ({"pull_request", "workflow_run"} & triggers(workflow)):
        return
    for job_id, job in _jobs(workflow):
        for step_name, step in _steps(job):
            for command in commands(step.get("run") or ""):
                where = f"{job_id}/{step_name}"
                if "--cache-ref" in command:
                    yield Problem(name, where, "a pull request's build may not read or write a registry cache")
                if command.startswith("invoke ci.image-ref") and "--pr" not in command.split():
                    yield Problem(name, where, "a pull request's image must be named with `invoke ci.image-ref --pr`")


def _check_caches(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    """A layer cache is code the next build trusts: only a job in an environment may name one.

    GITHUB_TOKEN's `packages: write` is any branch's for the asking, so a cache written with it
    is a branch's to poison; the environment must hold the cache's own credential too. (A pull
    request's workflows may name none at all: _check_pr_images.)"""
    if {"pull_request", "workflow_run"} & triggers(workflow):
        return
    for job_id, job in _jobs(workflow):
        if job.get("environment"):
            continue
        for step_name, step in _steps(job):
            if any("--cache-ref" in command for command in commands(step.get("run") or "")):
                yield Problem(
                    name, f"{job_id}/{step_name}", "a layer cache outside an environment: any branch can write it"
                )


def _check_production_images(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    """A production submit runs `--image "$VAR"` with VAR = the ref `invoke ci.verify-image` output."""
    for job_id, job in _jobs(workflow):
        if job.get("environment") != PRODUCTION:
            continue
        verified: set[str] = set()
        for step_name, step in _steps(job):
            for command in commands(step.get("run") or ""):
                if command.startswith(VERIFY_IMAGE) and step.get("id"):
                    verified.add(step["id"])
                if not command.startswith("invoke submit"):
                    continue
                flag = _IMAGE_FLAG.search(command)
                value = str((step.get("env") or {}).get(flag.group(1), "")) if flag else ""
                source = _STEP_REF.match(value.strip())
                if not (source and source.group(1) in verified):
                    yield Problem(
                        name,
                        f"{job_id}/{step_name}",
                        f"a production submit must run the digest an earlier `{VERIFY_IMAGE}` step verified "
                        '(--image "$IMAGE" with IMAGE: ${{ steps.<its id>.outputs.ref }})',
                    )


def _check_pin_comments(name: str, text: str) -> Iterator[Problem]:
    """The release a SHA is, in a comment: for the reader, and for the next upgrade (zizmor checks
    the comment against the SHA only online)."""
    for number, line in enumerate(text.splitlines(), 1):
        used = _SHA_USES.match(line)
        if used and not used.group("comment"):
            yield Problem(name, f"line {number}", f"{used.group(1)}: a commit SHA without its `# vX.Y.Z`")


def _check_version_copies(name: str, text: str) -> Iterator[Problem]:
    for package, version in versions.pins().items():
        if re.search(rf"(?<![\w.]){re.escape(version)}(?![\w.])", text):
            yield Problem(name, "text", f"{package}=={version} is pinned in requirements.txt; read it, do not copy it")


def check(path: Path) -> list[Problem]:
    """Every rule over one workflow file; an empty list means it keeps them all."""
    text = path.read_text()
    workflow = load(path)
    name = path.name
    return [
        *_check_label_concurrency(name, workflow),
        *_check_jobs(name, workflow),
        *_check_runs(name, workflow),
        *_check_pull_requests(name, workflow),
        *_check_workflow_runs(name, workflow),
        *_check_installs(name, workflow),
        *_check_pr_images(name, workflow),
        *_check_caches(name, workflow),
        *_check_production_images(name, workflow),
        *_check_secret_scope(name, workflow),
        *_check_pin_comments(name, text),
        *_check_version_copies(name, text),
    ]


def workflow_files(directory: Path = WORKFLOWS_DIR) -> list[Path]:
    return sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
