"""Which Kubernetes permissions raybake's code uses, read three ways the RBAC tests compare.

- `rbac_of(method, path, query)`: the (resource, verb) the API server's authorizer checks for one
  HTTP request (its request-info rules: GET on a name is get, on a collection list, POST create,
  PUT update, PATCH patch, DELETE delete). A port-forward is a websocket GET on `pods/portforward`:
  authorized as `get`, and since Kubernetes 1.35 also as `create` (kubernetes/kubernetes#134577).
- `ACCESS`: what each raybake.kube.client.Kube method asks for; tests/unit/test_rbac.py checks it
  against the real client's requests, and the tasks' code paths are recorded as Kube method calls.
- `documented()`: the table of docs/clusters.md ("The Role each task needs").
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "clusters.md"
# The table's header; each row below it: | `task` | `resource` | verb, verb | why |
HEADER = "| Task | Resource | Verbs | Why |"
RESOURCE_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
CONNECT = {"portforward", "exec", "attach"}

Permission = tuple[str, str]  # (resource as kubectl names it: rayjobs.ray.io, pods/portforward; verb)

ACCESS: dict[str, set[Permission]] = {
    "served_schema": {("customresourcedefinitions.apiextensions.k8s.io", "get")},
    "create_rayjob": {("rayjobs.ray.io", "create")},
    "create_owned Secret": {("secrets", "create")},
    "create_owned NetworkPolicy": {("networkpolicies.networking.k8s.io", "create")},
    "rayjob": {("rayjobs.ray.io", "get")},
    "patch_rayjob": {("rayjobs.ray.io", "patch")},
    "delete_rayjob": {("rayjobs.ray.io", "delete")},
    "rayjobs": {("rayjobs.ray.io", "list")},
    "apply_daemonset": {("daemonsets.apps", "create"), ("daemonsets.apps", "update")},
    "pods": {("pods", "list")},
    "events": {("events", "list")},
    "head_pod": {("services", "get"), ("pods", "list")},
    "forward": {("pods/portforward", "get"), ("pods/portforward", "create")},
    "raycluster": {("rayclusters.ray.io", "get")},
    "create_raycluster": {("rayclusters.ray.io", "create")},
    "patch_raycluster": {("rayclusters.ray.io", "patch")},
    "delete_raycluster": {("rayclusters.ray.io", "delete")},
    "secret_value": {("secrets", "get")},
    "delete_secret": {("secrets", "delete")},
    "workloads": {("workloads.kueue.x-k8s.io", "list")},
}
# The tasks of a team's cluster (raybake.clusters.team): their Roles are deploy/rbac/team-cluster.yaml's,
# apart from the jobs' Role, since they read and delete a cluster's token Secret.
TEAM_TASKS = ("cluster up", "cluster upgrade", "cluster status", "cluster down", "submit --cluster TEAM")
# Discovery: what every authenticated user may read (the system:discovery ClusterRole).
DISCOVERY = ("served_versions", "served_kinds")
CLUSTER_SCOPED = {"customresourcedefinitions.apiextensions.k8s.io"}


def rbac_of(method: str, path: str, query: str = "") -> set[Permission] | None:
    """The permissions one request needs; None for a discovery path (no resource)."""
    match = RESOURCE_PATH.match(path)
    if not match:
        return None  # /apis, /apis/GROUP/VERSION: discovery
    group = match["group"] or ""
    resource = match["resource"] + (f".{group}" if group else "")
    if match["sub"]:
        resource = f"{match['resource']}/{match['sub']}"
        if match["sub"] in CONNECT and method == "GET":
            return {(resource, "get"), (resource, "create")}
    if method == "GET":
        verb = "watch" if "watch=true" in query else "get" if match["name"] else "list"
    elif method == "DELETE":
        verb = "delete" if match["name"] else "deletecollection"
    else:
        verb = VERBS[method]
    return {(resource, verb)}


def documented(text: str | None = None) -> dict[str, set[Permission]]:
    """The docs' table: for each task, the (resource, verb) pairs its Role needs."""
    lines = (text if text is not None else DOCS.read_text()).splitlines()
    start = lines.index(HEADER) + 2  # past the |---| line
    table: dict[str, set[Permission]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        task, resource, verbs, _why = (cell.strip() for cell in line.strip("|").split("|"))
        for verb in verbs.split(","):
            table.setdefault(task.strip("`"), set()).add((resource.strip("`"), verb.strip()))
    return table


def role_rules(permissions: set[Permission]) -> list[dict]:
    """A Role's rules granting exactly `permissions` (namespaced ones), one rule per resource."""
    by_resource: dict[str, set[str]] = {}
    for resource, verb in permissions:
        if resource not in CLUSTER_SCOPED:
            by_resource.setdefault(resource, set()).add(verb)
    rules = []
    for resource, verbs in sorted(by_resource.items()):
        name, _, group = resource.partition(".")
        if "/" in resource:
            name, group = resource, ""
        rules.append({"apiGroups": [group], "resources": [name], "verbs": sorted(verbs)})
    return rules
