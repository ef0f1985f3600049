"""Pinned versions, read from requirements.txt: the one place each is written."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"


@cache
def pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def ray_version() -> str:
    return pins()["ray"]


def git_sha() -> str:
    """The client's commit, recorded in the manifest; 'unknown' outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip()


# The KubeRay operator (Helm chart and CRDs) that manifests target and `invoke kind.up` installs;
# not a Python package, so pinned here. Workflows read it through `invoke versions`.
KUBERAY = "1.7.0"
