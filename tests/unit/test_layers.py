"""Imports run one way: no raybake module imports from a layer above it, and job/ never imports raybake/.

The layers are the ones CONTRIBUTING.md draws; a function-level or TYPE_CHECKING import counts too.
"""

from __future__ import annotations

import ast
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
    "urls",
    "objectstore",
}
# Packages of the second layer use the foundations and themselves, not each other.
SIDE_BY_SIDE = {"kube", "image", "ci"}
LAYER = {**{name: 0 for name in FOUNDATIONS}, **{name: 1 for name in SIDE_BY_SIDE}, "clusters": 2}
TOP = 3  # submit.py, bench/


def _part(module: str) -> str:
    """`raybake.kube.client` -> `kube`; `raybake` itself (the package) -> ``."""
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: Path) -> set[str]:
    """Every module a file imports; `from raybake import x` names `raybake.x`. raybake has no relative imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"
            if node.module == "raybake":
                found.update(f"raybake.{alias.name}" for alias in node.names)
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


def test_the_layers_name_every_part_of_raybake() -> None:
    parts = {_part(module) for module in _modules("raybake")} - {"__init__", ""}
    assert parts - set(LAYER) == {"submit", "identity", "bench"}


# What the client may import of job/: the records of the files the job writes, which need nothing
# but the standard library (the client's environment has no torch, and job/ no raybake/).
CLIENT_READS_OF_THE_JOB = {"job.records"}


def test_the_client_imports_of_the_job_only_its_records_and_they_only_the_standard_library() -> None:
    import sys

    crossing = [
        f"{module} imports {imported}"
        for module, path in _modules("raybake").items()
        for imported in _imports(path)
        if (imported == "job" or imported.startswith("job.")) and imported not in CLIENT_READS_OF_THE_JOB
    ]
    assert crossing == []
    for module in CLIENT_READS_OF_THE_JOB:
        path = ROOT / (module.replace(".", "/") + ".py")
        outside = {name for name in _imports(path) if name.split(".")[0] not in sys.stdlib_module_names}
        assert outside == set(), f"{module} imports {outside}"
