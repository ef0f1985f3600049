"""requirements-client.lock: the client's runtime, every package pinned with its hashes.

Workflow jobs that hold credentials install it with `pip install --require-hashes --no-deps`:
a package whose files changed on the index, or one nobody locked, fails the install instead of
running next to the credentials. pip-compile (pip-tools, pinned in requirements-dev.txt) makes
it from requirements-client.in; `invoke lock --check` (run by the unit tests) says whether every
pin of the inputs is locked at its version, so a bumped pin without a new lock fails CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from raybake.errors import ExitCode, RaybakeError
from raybake.versions import ROOT

SOURCE = ROOT / "requirements-client.in"
LOCK = ROOT / "requirements-client.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#\\]+)", re.MULTILINE)


def command() -> list[str]:
    return [
        sys.executable,
        "-m",
        "piptools",
        "compile",
        "--quiet",
        "--generate-hashes",
        "--allow-unsafe",
        "--strip-extras",
        "--no-header",
        "--no-emit-index-url",
        "--no-emit-find-links",
        "--output-file",
        str(LOCK.relative_to(ROOT)),
        str(SOURCE.relative_to(ROOT)),
    ]


def write() -> None:
    # pip's default index alone (PyPI): a local wheel (torch's CPU build) or a mirror named by the
    # environment or a pip config would lock files GitHub cannot get.
    ignored = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX")
    env = {**{k: v for k, v in os.environ.items() if k not in ignored}, "PIP_CONFIG_FILE": os.devnull}
    done = subprocess.run(command(), cwd=ROOT, env=env, check=False)
    if done.returncode != 0:
        raise RaybakeError(f"pip-compile failed (exit {done.returncode}); see its output above", ExitCode.FAILED)


def _pins(text: str) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in _PIN.findall(text)}


def inputs() -> dict[str, str]:
    """Every pin requirements-client.in asks for, following its `-r` includes."""
    found: dict[str, str] = {}
    pending = [SOURCE]
    while pending:
        path = pending.pop()
        text = path.read_text()
        found |= _pins(text)
        pending += [path.parent / name for name in re.findall(r"^-r\s+(\S+)", text, re.MULTILINE)]
    return found


def stale() -> list[str]:
    """What the lock does not hold as the inputs pin it; empty when it is current."""
    if not LOCK.is_file():
        return [f"{LOCK.name} is missing"]
    text = LOCK.read_text()
    locked = _pins(text)
    problems = [
        f"{name}=={version} is locked as {locked.get(name, 'nothing')}"
        for name, version in sorted(inputs().items())
        if locked.get(name) != version
    ]
    unhashed = [
        name for name, block in re.findall(r"^(\S+==\S+)((?:\s+\\\n\s+--hash=\S+)*)", text, re.MULTILINE) if not block
    ]
    problems += [f"{name} has no hash" for name in unhashed]
    problems += [
        f"the lock names an index or wheel folder: {line!r}" for line in text.splitlines() if line.startswith("--")
    ]
    return problems
