"""The pinned KubeRay's CRD schemas (deploy/crds/, unmodified from its release), made strict.

A misspelt field fails validation.

Kubernetes prunes unknown fields silently, so a typo in a rendered manifest would vanish on the
cluster; here `additionalProperties: false` goes wherever the schema lists `properties` and does
not preserve unknown fields, and the typo fails the test instead.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from raybake.versions import ROOT

CRDS = ROOT / "deploy" / "crds"


def strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@cache
def crd_schema(kind: str, version: str = "v1", folder: Path = CRDS) -> dict[str, Any]:
    crd = yaml.load((folder / f"ray.io_{kind}.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    # Cached: the CRD is large and parsing it per test would dominate the unit tier.
    return strict(served[version]["schema"]["openAPIV3Schema"])
