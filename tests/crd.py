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
def served_crd_schema(kind: str, version: str = "v1", folder: Path = CRDS) -> dict[str, Any]:
    """The schema as an API server serves it: not made strict (unknown fields are pruned there)."""
    crd = yaml.load((folder / f"ray.io_{kind}.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return {v["name"]: v for v in crd["spec"]["versions"]}[version]["schema"]["openAPIV3Schema"]


@cache
def crd_schema(kind: str, version: str = "v1", folder: Path = CRDS) -> dict[str, Any]:
    # Cached: the CRD is large and parsing it per test would dominate the unit tier.
    return strict(served_crd_schema(kind, version, folder))


def kuberay_deletion_errors(job: dict) -> list[str]:
    """The rules KubeRay 1.7 checks beyond the schema (its CEL rules and validateDeletionConfiguration)."""
    errors = []
    rules = job.get("deletionStrategy", {}).get("deletionRules", [])
    if rules and job.get("shutdownAfterJobFinishes"):
        errors.append("shutdownAfterJobFinishes and deletionRules are mutually exclusive")
    if not job.get("shutdownAfterJobFinishes") and job.get("ttlSecondsAfterFinished", 0) > 0:
        errors.append("ttlSecondsAfterFinished without shutdownAfterJobFinishes")
    seen: dict[tuple, dict[str, int]] = {}
    for rule in rules:
        condition = dict(rule["condition"])
        ttl = condition.pop("ttlSeconds", 0)
        if len(condition) != 1:
            errors.append(f"exactly one of jobStatus, jobDeploymentStatus: {condition}")
        policies = seen.setdefault(tuple(condition.items()), {})
        if rule["policy"] in policies:
            errors.append(f"duplicate rule {rule}")
        policies[rule["policy"]] = ttl
    order = ("DeleteWorkers", "DeleteCluster", "DeleteSelf")
    for key, policies in seen.items():
        ttls = [policies[p] for p in order if p in policies]
        if ttls != sorted(ttls):
            errors.append(f"TTLs must not decrease Workers <= Cluster <= Self: {key} {policies}")
    return errors
