"""Imports run one way: pyproject.toml's [tool.importlinter] contracts say how (raybake's layers,
job/ never importing raybake/, raybake/ importing from job/ only the modules the two share, and
never benchmarks/, tools/ or tasks/), and import-linter checks them; an import inside a function
or under TYPE_CHECKING counts too. The shared modules load nothing but the standard library.

The tree must keep every contract, and each contract must catch what it forbids: a copy of the
tree with one forbidden import added breaks the contract that names it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from raybake.versions import ROOT
from tools.lint import tool

PACKAGES = ("raybake", "job", "benchmarks", "tools", "tasks")
CONTRACTS = [
    c["name"] for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
]
LAYERS, NO_CLIENT, SHARED_ONLY, NO_TOOLING = CONTRACTS
# What the client imports from job/ (CONTRIBUTING.md, "The tree"): facts both sides must hold alike.
SHARED_WITH_THE_CLIENT = ("job.urls", "job.listing", "job.digest", "job.pipelines", "job.records")


def lint_imports(root: Path) -> str:
    """What lint-imports says of the tree at `root`, its lines (wrapped at 80 columns) joined."""
    done = subprocess.run([tool("lint-imports"), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == (0 if "0 broken" in said else 1), said
    return said


def test_the_tree_keeps_every_import_contract() -> None:
    said = lint_imports(ROOT)
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in said
    assert all(f"{name} KEPT" in said for name in CONTRACTS), said


@pytest.mark.parametrize(
    ("module", "added", "contract"),
    [
        ("raybake/errors.py", "from raybake.clusters import backend_for", LAYERS),  # a layer above
        ("raybake/kube/client.py", "def _later():\n    import raybake.image.build", LAYERS),  # beside
        ("raybake/config.py", "if TYPE_CHECKING:\n    from raybake.submit import submit", LAYERS),
        ("job/corpus.py", "def _later():\n    from raybake import errors", NO_CLIENT),
        ("raybake/submit.py", "from tools import gha", NO_TOOLING),
        ("raybake/spec.py", "from job import worker", SHARED_ONLY),  # a job module that is not shared
        ("raybake/spec.py", "import benchmarks.mfu", NO_TOOLING),
        ("raybake/newpart.py", "import raybake.errors", LAYERS),  # a module in no layer (exhaustive)
    ],
)
def test_a_forbidden_import_breaks_the_contract_that_names_it(tmp_path, module, added, contract) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    source = path.read_text() if path.exists() else ""
    preamble = "from typing import TYPE_CHECKING\n" if "TYPE_CHECKING" in added else ""
    path.write_text(f"{source}\n{preamble}{added}\n")
    said = lint_imports(tmp_path)
    assert f"{contract} BROKEN" in said and "1 broken" in said, said


def test_the_shared_modules_load_only_the_standard_library() -> None:
    """The client's environment (requirements-client.lock) has none of the job's libraries."""
    script = (
        "import json, sys; before = set(sys.modules); "
        f"import {', '.join(SHARED_WITH_THE_CLIENT)}; "
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert loaded - set(sys.stdlib_module_names) == {"job"}
