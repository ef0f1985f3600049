"""The rules every GitHub Actions workflow here keeps, checked by `invoke lint` and the unit tests.

actionlint and the workflow JSON schema catch what is malformed; these rules catch what is
well-formed but unsafe or against the project's conventions: logic that lives only in YAML,
script injection, secrets or write tokens reachable from a fork, unpinned actions, jobs that
can hang for six hours, and a second copy of a pinned version.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raybake import versions

WORKFLOWS_DIR = versions.ROOT / ".github" / "workflows"

# Commands a `run:` step may hold besides `invoke ...`, each with the reason it cannot be a task.
RUN_EXCEPTIONS = {
    "pip install -r requirements-dev.txt": "bootstrap: invoke itself is installed by this command",
}
# The same-repository guard a pull_request job must carry before it sees secrets or write tokens.
SAME_REPO_GUARD = "github.event.pull_request.head.repo.full_name == github.repository"
DISPATCH_GUARD = "github.event_name == 'workflow_dispatch'"
_SHA_PIN = re.compile(r"^\s*-?\s*uses:\s*([^@\s]+)@([0-9a-f]{40})\s+#\s*v\d[\w.\-]*\s*$")
_USES_LINE = re.compile(r"^\s*-?\s*uses:\s*(\S+)")
_SECRET_REF = re.compile(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)")


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


def _check_runs(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    for job_id, job in _jobs(workflow):
        for step_name, step in _steps(job):
            script = step.get("run")
            if script is None:
                continue
            where = f"{job_id}/{step_name}"
            if "${{" in script:
                yield Problem(name, where, "`${{ }}` inside run: (script injection); pass values through env:")
            for command in commands(script):
                if not command.startswith("invoke ") and command not in RUN_EXCEPTIONS:
                    yield Problem(name, where, f"run: command {command!r} is not an invoke task")


def _check_jobs(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    for job_id, job in _jobs(workflow):
        if not isinstance(job.get("timeout-minutes"), int):
            yield Problem(name, job_id, "no timeout-minutes")
        for step_name, step in _steps(job):
            uses, given = str(step.get("uses", "")), step.get("with") or {}
            where = f"{job_id}/{step_name}"
            # A persisted token in .git/config would be readable by every later step's code.
            if uses.startswith("actions/checkout@") and given.get("persist-credentials") is not False:
                yield Problem(name, where, "checkout without persist-credentials: false")
            if uses.startswith("actions/setup-python@") and given.get("python-version-file") != ".python-version":
                yield Problem(name, where, "setup-python must read .python-version (the one Python pin)")


def _check_top(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    if workflow.get("permissions") != {"contents": "read"}:
        yield Problem(name, "permissions", "top-level permissions must be exactly `contents: read`")
    if not (workflow.get("concurrency") or {}).get("group"):
        yield Problem(name, "concurrency", "no concurrency group")
    for forbidden in ("pull_request_target", "workflow_run"):
        if forbidden in triggers(workflow):
            yield Problem(name, "on", f"{forbidden} runs with secrets next to untrusted code; use pull_request")


def _check_secret_scope(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    """Secrets in a step's env only: a workflow's or job's env reaches every step, pip's too."""
    scopes = [("env", workflow.get("env")), *((f"{job_id}/env", job.get("env")) for job_id, job in _jobs(workflow))]
    for where, env in scopes:
        secrets = sorted(set(_SECRET_REF.findall(yaml.safe_dump(env or {}))) - {"GITHUB_TOKEN"})
        if secrets:
            yield Problem(name, where, f"secrets {secrets} in a shared env:; give them to the steps that use them")


def _check_fork_safety(name: str, workflow: dict[str, Any]) -> Iterator[Problem]:
    """On pull_request, secrets and write scopes only in jobs a fork can never reach."""
    on_prs = "pull_request" in triggers(workflow)
    for job_id, job in _jobs(workflow):
        secrets = {s for s in _SECRET_REF.findall(yaml.safe_dump(job)) if s != "GITHUB_TOKEN"}
        writes = sorted(k for k, v in (job.get("permissions") or {}).items() if v == "write")
        condition = str(job.get("if", ""))
        # A dispatch-only job is run by someone with write access; an `||` could let a PR in.
        guarded = SAME_REPO_GUARD in condition or (DISPATCH_GUARD in condition and "||" not in condition)
        if secrets and not job.get("environment"):
            yield Problem(name, job_id, f"secrets {sorted(secrets)} outside a protected environment:")
        if on_prs and (secrets or writes) and not guarded:
            yield Problem(
                name,
                job_id,
                f"secrets {sorted(secrets)} / write scopes {writes} on pull_request without `if: {SAME_REPO_GUARD}`",
            )


def _check_pins(name: str, text: str) -> Iterator[Problem]:
    for number, line in enumerate(text.splitlines(), 1):
        used = _USES_LINE.match(line)
        if not used or used.group(1).startswith("./"):
            continue
        if not _SHA_PIN.match(line):
            yield Problem(name, f"line {number}", f"{used.group(1)}: not pinned to a full commit SHA with a `# vX.Y.Z`")


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
        *_check_top(name, workflow),
        *_check_jobs(name, workflow),
        *_check_runs(name, workflow),
        *_check_fork_safety(name, workflow),
        *_check_secret_scope(name, workflow),
        *_check_pins(name, text),
        *_check_version_copies(name, text),
    ]


def workflow_files(directory: Path = WORKFLOWS_DIR) -> list[Path]:
    return sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
