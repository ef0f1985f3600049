"""Imports run one way: pyproject.toml's [tool.importlinter] contracts say how (raybake's layers,
job/ never importing raybake/, raybake/ never importing benchmarks/, tools/ or tasks/), and
import-linter checks them; an import inside a function or under TYPE_CHECKING counts too.

The tree must keep every contract, and each contract must catch what it forbids: a copy of the
tree with one forbidden import added breaks the contract that names it.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from raybake.versions import ROOT
from tools.lint import tool

PACKAGES = ("raybake", "job", "benchmarks", "tools", "tasks")
CONTRACTS = [
    c["name"] for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
]
LAYERS, NO_CLIENT, NO_TOOLING = CONTRACTS


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
