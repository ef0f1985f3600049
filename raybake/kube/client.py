"""The Kubernetes API as raybake uses it: RayJobs, the pods of a Ray cluster, a port-forward.

Configuration as `kubectl` and `oc` find it: --kube-context or the kubeconfig's current context
(what `oc login` writes), in-cluster service account credentials inside a pod (CI). Objects
come back as plain dicts (the JSON the API sends), which raybake.kube.stuck reads.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.kube import crdcheck
from raybake.kube.kuberay import GROUP, PLURALS, RAYCLUSTERS, RAYJOBS, VERSION, head_service
from raybake.kube.kueue import KUEUE_GROUP, KUEUE_VERSION
from raybake.kube.portforward import Forward
from raybake.kube.stuck import api_problem, missing_kind
from raybake.result import AlreadySubmitted

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class Kube:
    """One API client for one namespace."""

    def __init__(self, settings: Settings) -> None:
        from kubernetes import client, config

        self.settings = settings
        namespace = settings.namespace
        try:
            if not settings.kube_context and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config()
                if not namespace and IN_CLUSTER_NAMESPACE.is_file():
                    namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
            else:
                # $KUBECONFIG as it is now: the client reads it once, at import.
                files = os.environ.get("KUBECONFIG") or None
                config.load_kube_config(config_file=files, context=settings.kube_context)
                contexts, current = config.list_kube_config_contexts(config_file=files)
                if settings.kube_context:
                    current = next(c for c in contexts if c["name"] == settings.kube_context)
                namespace = namespace or current.get("context", {}).get("namespace")
        except (config.ConfigException, OSError, StopIteration) as exc:
            raise RaybakeError(
                f"no Kubernetes access: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                "log in (`oc login`, `kubectl config use-context`) or pass --kube-context",
                ExitCode.UNREACHABLE,
            ) from None
        self.namespace = namespace or "default"
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def _json(self, obj: Any) -> Any:
        return self.api.sanitize_for_serialization(obj)

    def _call(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        answers: Mapping[int, RaybakeError | None] | None = None,
        **kwargs: Any,
    ) -> Any:
        """An API call whose failure becomes one line: `answers` maps an HTTP status the caller
        expects (404, 409) to its own error, or to None (then None is the call's answer); any
        other status, the status and the server's reason."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if answers and exc.status in answers:
                answer = answers[exc.status]
                if answer is None:
                    return None
                raise answer from None
            raise RaybakeError(f"{what} failed: HTTP {exc.status} {exc.reason}", ExitCode.UNREACHABLE) from None
        except HTTPError as exc:
            raise RaybakeError(
                f"{what} failed: cannot reach the Kubernetes API ({exc})", ExitCode.UNREACHABLE
            ) from None

    def served_versions(self, group: str = GROUP) -> list[str] | None:
        """The versions the API serves for `group`; None when the group is unknown."""
        from kubernetes import client

        groups = self._call("API discovery", client.ApisApi(self.api).get_api_versions)
        found = next((g for g in groups.groups if g.name == group), None)
        return None if found is None else [v.version for v in found.versions]

    def served_kinds(self) -> list[str]:
        resources = self._call("API discovery", self.custom.get_api_resources, GROUP, VERSION)
        # Subresources (rayjobs/status) repeat their kind; only top-level resources count.
        return [r.kind for r in resources.resources if "/" not in r.name]

    def check_operator(self, kind: str = "RayJob", manifest: dict[str, Any] | None = None) -> None:
        """Operator missing or CRDs of another version: refuse before creating anything.

        With a manifest, also its fields against the served CRD's schema (raybake.kube.crdcheck).
        """
        problem = api_problem(self.served_versions()) or missing_kind(kind, self.served_kinds())
        if not problem and manifest is not None and (schema := self.served_schema(f"{PLURALS[kind]}.{GROUP}")):
            problem = crdcheck.problem(schema, manifest)
        if problem:
            raise RaybakeError(problem, ExitCode.UNREACHABLE)

    def served_schema(self, crd: str) -> dict[str, Any] | None:
        """The served version's openAPIV3Schema of a CRD; None where this user may not read CRDs."""
        import json

        from kubernetes import client

        response = self._call(
            f"reading CRD {crd!r}",
            client.ApiextensionsV1Api(self.api).read_custom_resource_definition,
            crd,
            _preload_content=False,
            answers={401: None, 403: None, 404: None},
        )
        if response is None:
            return None
        versions = {v["name"]: v for v in json.loads(response.data)["spec"]["versions"]}
        return versions.get(VERSION, {}).get("schema", {}).get("openAPIV3Schema")

    # RayJobs
    @property
    def _rayjobs(self) -> tuple[str, str, str, str]:
        """The leading arguments of every custom-object call on this namespace's RayJobs."""
        return (GROUP, VERSION, self.namespace, RAYJOBS)

    def create_rayjob(self, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        taken = AlreadySubmitted(
            f"a RayJob {name!r} already exists in namespace {self.namespace!r}; pass another --name "
            f"or remove it with `invoke stop --backend rayjob --job {name} --delete`",
            ExitCode.REFUSED,
        )
        return self._call(
            f"creating RayJob {name!r}",
            self.custom.create_namespaced_custom_object,
            *self._rayjobs,
            manifest,
            answers={409: taken},
        )

    def create_owned(self, manifest: dict[str, Any], owner: dict[str, Any]) -> None:
        """Create a Secret or NetworkPolicy that Kubernetes deletes with `owner` (the RayJob)."""
        from kubernetes import client

        meta = owner["metadata"]
        reference = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"]}
        body = {**manifest, "metadata": {**manifest["metadata"], "ownerReferences": [reference]}}
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        create: dict[str, Callable[..., Any]] = {
            "Secret": self.core.create_namespaced_secret,
            "NetworkPolicy": client.NetworkingV1Api(self.api).create_namespaced_network_policy,
        }
        self._call(f"creating {kind} {name!r}", create[kind], self.namespace, body)

    def rayjob(self, name: str) -> dict[str, Any]:
        missing = RaybakeError(f"no RayJob {name!r} in namespace {self.namespace!r}", ExitCode.REFUSED)
        found: dict[str, Any] = self._read("RayJob", self._rayjobs, name, missing=missing)
        return found

    def _read(self, kind: str, where: tuple[str, str, str, str], name: str, *, missing: RaybakeError | None) -> Any:
        """The custom object `name` of `kind`; `missing` (a value, or an error to raise) when there is none."""
        return self._call(
            f"reading {kind} {name!r}", self.custom.get_namespaced_custom_object, *where, name, answers={404: missing}
        )

    def patch_rayjob(self, name: str, patch: dict[str, Any]) -> None:
        self._call(
            f"updating RayJob {name!r}",
            self.custom.patch_namespaced_custom_object,
            *self._rayjobs,
            name,
            patch,
        )

    def delete_rayjob(self, name: str) -> None:
        self._call(
            f"deleting RayJob {name!r}",
            self.custom.delete_namespaced_custom_object,
            *self._rayjobs,
            name,
        )

    def rayjobs(self, selector: str) -> list[dict[str, Any]]:
        found = self._call(
            "listing RayJobs",
            self.custom.list_namespaced_custom_object,
            *self._rayjobs,
            label_selector=selector,
        )
        return found.get("items", [])

    def secret_value(self, name: str, key: str) -> str:
        """One value of a Secret, decoded; never printed. Only a team cluster's token is read so
        (a RayJob's stays in the state of the client that made it)."""
        secret = self._call(f"reading Secret {name!r}", self.core.read_namespaced_secret, name, self.namespace)
        return base64.b64decode((secret.data or {}).get(key, "")).decode()

    # RayClusters: a team's long-lived cluster (raybake.clusters.team)
    @property
    def _rayclusters(self) -> tuple[str, str, str, str]:
        return (GROUP, VERSION, self.namespace, RAYCLUSTERS)

    def create_raycluster(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """The created RayCluster; None when one of that name exists already."""
        name = manifest["metadata"]["name"]
        return self._call(
            f"creating RayCluster {name!r}",
            self.custom.create_namespaced_custom_object,
            *self._rayclusters,
            manifest,
            answers={409: None},
        )

    def raycluster(self, name: str) -> dict[str, Any] | None:
        """The RayCluster with its status; None when there is none of that name."""
        found: dict[str, Any] | None = self._read("RayCluster", self._rayclusters, name, missing=None)
        return found

    def patch_raycluster(self, name: str, patch: dict[str, Any]) -> None:
        self._call(
            f"updating RayCluster {name!r}", self.custom.patch_namespaced_custom_object, *self._rayclusters, name, patch
        )

    def delete_raycluster(self, name: str) -> bool:
        """False when there was none of that name."""
        found = self._call(
            f"deleting RayCluster {name!r}",
            self.custom.delete_namespaced_custom_object,
            *self._rayclusters,
            name,
            answers={404: None},
        )
        return found is not None

    def delete_secret(self, name: str) -> None:
        """Delete a Secret; one that is gone already is no error."""
        self._call(
            f"deleting Secret {name!r}", self.core.delete_namespaced_secret, name, self.namespace, answers={404: None}
        )

    # Kueue: a RayJob's Workload, where this user may read it
    def workloads(self, owner_uid: str) -> list[dict[str, Any]] | None:
        """The Kueue Workloads that a RayJob (by uid) owns; None where Kueue or the right to read is missing."""
        found = self._call(
            "listing Kueue Workloads",
            self.custom.list_namespaced_custom_object,
            KUEUE_GROUP,
            KUEUE_VERSION,
            self.namespace,
            "workloads",
            answers={403: None, 404: None},
        )
        if found is None:
            return None
        return [
            w
            for w in found.get("items", [])
            if any(o.get("uid") == owner_uid for o in w["metadata"].get("ownerReferences", []))
        ]

    # DaemonSets
    def apply_daemonset(self, manifest: dict[str, Any]) -> None:
        """Create the DaemonSet, or replace the one of that name."""
        from kubernetes import client

        apps = client.AppsV1Api(self.api)
        name = manifest["metadata"]["name"]
        created = self._call(
            f"creating DaemonSet {name!r}",
            apps.create_namespaced_daemon_set,
            self.namespace,
            manifest,
            answers={409: None},
        )
        if created is None:
            self._call(
                f"replacing DaemonSet {name!r}", apps.replace_namespaced_daemon_set, name, self.namespace, manifest
            )

    # Pods
    def pods(self, selector: str) -> list[dict[str, Any]]:
        found = self._call("listing pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector)
        return [self._json(p) for p in found.items]

    def events(self, *names: str) -> list[dict[str, Any]]:
        """The Warning events of the objects so named, of any kind: a RayJob, its RayCluster, the
        Job a submitter would run in. Best effort: a Role without `list events` gets none."""
        found: list[dict[str, Any]] = []
        for name in names:
            listed = self._call(
                "listing events",
                self.core.list_namespaced_event,
                self.namespace,
                field_selector=f"involvedObject.name={name},type=Warning",
                answers={403: None},
            )
            found += [self._json(e) for e in (listed.items if listed else [])]
        return found

    def head_pod(self, cluster: str) -> dict[str, Any]:
        """The running pod behind the cluster's head service, found as `kubectl port-forward svc/...` does."""
        service = head_service(cluster)
        missing = RaybakeError(
            f"no service {service!r} in namespace {self.namespace!r}: is {cluster!r} the RayCluster's name?",
            ExitCode.REFUSED,
        )
        found = self._call(
            f"reading service {service!r}",
            self.core.read_namespaced_service,
            service,
            self.namespace,
            answers={404: missing},
        )
        selector = ",".join(f"{k}={v}" for k, v in sorted((found.spec.selector or {}).items()))
        running = [p for p in self.pods(selector) if p.get("status", {}).get("phase") == "Running"]
        if not selector or not running:
            raise RaybakeError(
                f"the service {service!r} has no running head pod yet; is the cluster up?", ExitCode.UNREACHABLE
            )
        return running[0]

    def forward(self, pod: str, port: int) -> Forward:
        """A loopback URL relayed to `port` of `pod`; close it when done."""
        from kubernetes.stream import portforward

        def connect() -> Any:
            stream = portforward(self.core.connect_get_namespaced_pod_portforward, pod, self.namespace, ports=str(port))
            return stream.socket(port)

        return Forward(connect)


class OnDemandKube:
    """For what talks to a cluster only sometimes: its Kube is made on first use, so `--dry-run`
    renders without any cluster access; a test gives one as `_kube`."""

    settings: Settings
    _kube: Kube | None = None

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(self.settings)
        return self._kube
