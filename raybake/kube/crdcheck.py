"""Does the cluster's RayJob CRD know every field raybake renders? The served schema, compared.

An API server prunes fields its CRD does not declare, silently: against CRDs older than the
pinned KubeRay (versions.KUBERAY), `deletionStrategy.deletionRules` would vanish and the GPU
workers would stay; Helm never upgrades CRDs, so such clusters are common. Reading the served
CRD needs cluster-scoped read access to CustomResourceDefinitions; without it the check is
skipped (the server-side dry run of a real create cannot tell pruning either).
"""

from __future__ import annotations

from typing import Any

from raybake.versions import KUBERAY


def undeclared(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Paths in `value` that `schema` (an openAPIV3Schema) does not declare."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return []
        properties = schema.get("properties")
        if properties is None:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return [p for k, v in value.items() for p in undeclared(extra, v, f"{path}.{k}")]
            return []
        found = []
        for key, item in value.items():
            if key not in properties:
                found.append(f"{path}.{key}".lstrip("."))
            else:
                found.extend(undeclared(properties[key], item, f"{path}.{key}"))
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [p for i, item in enumerate(value) for p in undeclared(schema["items"], item, f"{path}[{i}]")]
    return []


def problem(schema: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """One line naming what the served CRD lacks and how to bring it to the pin, or None."""
    missing = undeclared(schema, manifest)
    if not missing:
        return None
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return (
        f"the cluster's RayJob CRD does not declare {shown}: its CRDs are older than KubeRay {KUBERAY}, which "
        "raybake targets, and the API server would drop those fields. Upgrade them (Helm never does): "
        f"`helm show crds kuberay/kuberay-operator --version {KUBERAY} | kubectl apply --server-side "
        "--force-conflicts -f -`"
    )
