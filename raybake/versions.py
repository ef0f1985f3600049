"""Versions, each read from its one home: raybake's (pyproject.toml), the pins (requirements.txt),
the checkout's commit (git).
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
PYPROJECT = ROOT / "pyproject.toml"


@cache
def raybake_version() -> str:
    return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])


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


def origin_env() -> dict[str, str]:
    """What the job records about the client that sent it (manifest.json: raybake_version, git_sha)."""
    return {"RAYBAKE_VERSION": raybake_version(), "RAYBAKE_GIT_SHA": git_sha()}


# The KubeRay operator (Helm chart and CRDs) that manifests target and `invoke kind.up` installs;
# not a Python package, so pinned here. Workflows read it through `invoke versions`.
KUBERAY = "1.7.0"
# kind and the node image of the local cluster (`invoke kind-up`, e2e-kind.yml): the node image
# by digest, as kind's v0.32.0 release names it for Kubernetes v1.36.1 (its default image), so a
# re-pushed tag cannot change the cluster. deploy/kind.yaml carries the same (tests tie them).
KIND = "0.32.0"
KIND_NODE_IMAGE = "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"
# Helm, which installs the operator chart (the version KubeRay's own chart CI uses).
HELM = "3.17.3"


def pinned() -> dict[str, str]:
    """raybake's version and every pinned one, by the upper-case names `invoke versions` prints
    (NAME_VERSION=value, which workflows add to $GITHUB_ENV)."""
    named = {"RAYBAKE": raybake_version(), **{k.upper(): v for k, v in pins().items()}}
    return {
        name.replace("-", "_"): value
        for name, value in {**named, "KUBERAY": KUBERAY, "KIND": KIND, "HELM": HELM}.items()
    }
