"""Imports run one way: no raybake module imports from a layer above it, job/ never imports raybake/,
and raybake/ imports from job/ only the few standard-library modules the two sides share.

The layers are the ones CONTRIBUTING.md draws; a function-level or TYPE_CHECKING import counts too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from raybake.versions import ROOT

FOUNDATIONS = {
    "errors",
    "config",
    "versions",
    "spec",
    "result",
    "state",
    "report",
    "console",
    "poll",
    "objectstore",
    "private",
    "backends",
}
# Packages of the second layer use the foundations and themselves, not each other.
SIDE_BY_SIDE = {"kube", "image", "ci"}
LAYER = {**{name: 0 for name in FOUNDATIONS}, **{name: 1 for name in SIDE_BY_SIDE}, "clusters": 2}
TOP = 3  # submit.py, bench/
# What the client imports from job/ (CONTRIBUTING.md, "The layers"): facts both sides must hold
# alike, in modules that need nothing beyond the standard library, since the client's
# environment (requirements-client.lock) has none of the job's libraries.
SHARED_WITH_THE_CLIENT = {"job.urls", "job.listing", "job.digest", "job.pipelines"}


def _part(module: str) -> str:
    """`raybake.kube.client` -> `kube`; `raybake` itself (the package) -> ``."""
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: Path, *, run_only: bool = False) -> set[str]:
    """Every module a file imports; `from raybake import x` names `raybake.x` (job: `job.x`). No relative imports.

    `run_only`: leave out what only a type checker imports (under `if TYPE_CHECKING:`)."""
    found = set()
    tree = ast.parse(path.read_text())
    if run_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"
            if node.module in ("raybake", "job"):
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _modules(top: str) -> dict[str, Path]:
    root = ROOT / top
    return {".".join(p.relative_to(ROOT).with_suffix("").parts): p for p in root.rglob("*.py")}


def test_no_raybake_module_imports_from_a_layer_above_or_beside_it() -> None:
    upward = []
    for module, path in _modules("raybake").items():
        here = _part(module)
        rank = LAYER.get(here, TOP)
        for imported in _imports(path):
            if not imported.startswith("raybake."):
                continue
            there = _part(imported)
            if there == here:
                continue
            above = LAYER.get(there, TOP) > rank
            beside = here in SIDE_BY_SIDE and there in SIDE_BY_SIDE
            if above or beside:
                upward.append(f"{module} imports {imported}")
    assert upward == []


def test_the_job_never_imports_the_client() -> None:
    crossing = [
        f"{module} imports {imported}"
        for module, path in _modules("job").items()
        for imported in _imports(path)
        if imported == "raybake" or imported.startswith("raybake.")
    ]
    assert crossing == []


def test_the_client_imports_from_the_job_only_its_shared_modules() -> None:
    crossing = [
        f"{module} imports {imported}"
        for module, path in _modules("raybake").items()
        for imported in _imports(path)
        if (imported == "job" or imported.startswith("job.")) and imported not in SHARED_WITH_THE_CLIENT
    ]
    assert crossing == []


def test_the_shared_modules_need_only_the_standard_library() -> None:
    jobs = _modules("job")

    def source(module: str) -> Path:
        return jobs.get(module) or jobs[f"{module}.__init__"]

    beyond = [
        f"{module} imports {imported}"
        for module in sorted(SHARED_WITH_THE_CLIENT)
        for imported in _imports(source(module), run_only=True)
        if imported.split(".")[0] not in sys.stdlib_module_names and imported not in SHARED_WITH_THE_CLIENT
    ]
    assert beyond == []
    # Importing a shared module runs the __init__ of each package above it first: they stay bare.
    for module in SHARED_WITH_THE_CLIENT:
        for package in (".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 1)):
            assert _imports(source(package)) <= {"__future__"}, package


def test_the_layers_name_every_part_of_raybake() -> None:
    parts = {_part(module) for module in _modules("raybake")} - {"__init__", ""}
    assert parts - set(LAYER) == {"submit", "identity", "bench"}
