"""A stand-in for the Kubernetes API only (none can run here): RayJobs and pods held in dicts.

It subclasses raybake.kube.client.Kube and replaces the calls that would reach an API server, so
everything above them (check_operator, the backends) runs as it does against a cluster. The
statuses it reports are the real shapes of tests/unit/shapes, scripted per test.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd import served_crd_schema

from raybake.errors import ExitCode, RaybakeError
from raybake.kube.client import Kube
from raybake.kube.portforward import Forward


def use_stand_in_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """A kubeconfig whose only context (namespace ml) is a stand-in API server on loopback `port`,
    for tests that run the real kubernetes client against one."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "team", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}],
        "current-context": "team",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


class FakeKube(Kube):
    def __init__(
        self,
        *,
        statuses: list[dict[str, Any]] | None = None,
        pods: list[dict[str, Any]] | None = None,
        served: list[str] | None = ("v1", "v1alpha1"),
        kinds: tuple[str, ...] = ("RayCluster", "RayJob", "RayService"),
        connect: Callable[[], Any] | None = None,
        schema: dict[str, Any] | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        self.namespace = "ml"
        self.statuses = list(statuses or [])
        self.pod_list = pods or []
        self.event_list = events or []
        self.served = None if served is None else list(served)
        self.kinds = list(kinds)
        self.connect = connect
        # The served CRDs' schema: the pinned ones (deploy/crds) unless a test gives another.
        self.schema = schema
        self.created: list[dict[str, Any]] = []
        self.patches: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.forwards: list[Forward] = []
        # Secrets and NetworkPolicies made beside a RayJob, with the owner each names.
        self.owned: list[dict[str, Any]] = []
        # RayClusters by name (`invoke cluster`), with the status a test gives them.
        self.rayclusters: dict[str, dict[str, Any]] = {}
        self.deleted_secrets: list[str] = []
        # Kueue's Workloads, or None: Kueue absent or not readable.
        self.workload_list: list[dict[str, Any]] | None = None

    def served_versions(self, group: str = "ray.io") -> list[str] | None:
        return self.served

    def served_kinds(self) -> list[str]:
        return self.kinds

    def served_schema(self, crd: str) -> dict[str, Any] | None:
        return self.schema if self.schema is not None else served_crd_schema(crd.split(".")[0])

    def create_rayjob(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.created.append(copy.deepcopy(manifest))
        return manifest

    def create_owned(self, manifest: dict[str, Any], owner: dict[str, Any]) -> None:
        self.owned.append({**copy.deepcopy(manifest), "owner": owner["metadata"]["name"]})

    def secret_value(self, name: str, key: str) -> str:
        found = [o for o in self.owned if o["kind"] == "Secret" and o["metadata"]["name"] == name]
        if not found:
            raise RaybakeError(f"reading Secret {name!r} failed: HTTP 404 Not Found", ExitCode.UNREACHABLE)
        return found[-1]["stringData"][key]

    def status_now(self) -> dict[str, Any]:
        """The next scripted status; the last one stays."""
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def rayjob(self, name: str) -> dict[str, Any]:
        if not self.created or self.created[-1]["metadata"]["name"] != name:
            raise RaybakeError(f"no RayJob {name!r} in namespace {self.namespace!r}", ExitCode.REFUSED)
        return {**self.created[-1], "status": self.status_now()}

    def patch_rayjob(self, name: str, patch: dict[str, Any]) -> None:
        self.patches.append(patch)

    def delete_rayjob(self, name: str) -> None:
        self.deleted.append(name)

    def rayjobs(self, selector: str) -> list[dict[str, Any]]:
        return [{**m, "status": self.statuses[0]} for m in self.created]

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return self.pod_list

    def create_raycluster(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        name = manifest["metadata"]["name"]
        if name in self.rayclusters:
            return None
        self.rayclusters[name] = {**copy.deepcopy(manifest), "metadata": {**manifest["metadata"], "uid": "uid-1"}}
        return self.rayclusters[name]

    def raycluster(self, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.rayclusters.get(name))

    def patch_raycluster(self, name: str, patch: dict[str, Any]) -> None:
        self.patches.append(patch)
        found = self.rayclusters[name]
        found["spec"] = copy.deepcopy(patch["spec"])
        found["metadata"]["annotations"] = {
            **found["metadata"].get("annotations", {}),
            **patch["metadata"]["annotations"],
        }

    def delete_raycluster(self, name: str) -> bool:
        self.deleted.append(name)
        return self.rayclusters.pop(name, None) is not None

    def delete_secret(self, name: str) -> None:
        self.deleted_secrets.append(name)

    def workloads(self, owner_uid: str) -> list[dict[str, Any]] | None:
        return self.workload_list

    def events(self, *names: str) -> list[dict[str, Any]]:
        return [e for e in self.event_list if e["involvedObject"]["name"] in names and e.get("type") == "Warning"]

    def head_pod(self, cluster: str) -> dict[str, Any]:
        if self.connect is None:
            raise RaybakeError(
                f"the service {cluster + '-head-svc'!r} has no running head pod yet", ExitCode.UNREACHABLE
            )
        return {"metadata": {"name": f"{cluster}-head"}}

    def forward(self, pod: str, port: int) -> Forward:
        forward = Forward(self.connect)
        self.forwards.append(forward)
        return forward
