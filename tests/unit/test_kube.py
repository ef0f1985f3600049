"""raybake.kube.client over the real Kubernetes client, against a stand-in API server on loopback.

Kubernetes cannot run here, so a small HTTP server answers the few endpoints raybake calls,
with the bodies a real API server sends; the client, its configuration and raybake's error
mapping are the real ones.
"""

from __future__ import annotations

import functools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.kube.client import Kube
from raybake.versions import ROOT

RAY_GROUP = {
    "name": "ray.io",
    "versions": [
        {"groupVersion": "ray.io/v1", "version": "v1"},
        {"groupVersion": "ray.io/v1alpha1", "version": "v1alpha1"},
    ],
    "preferredVersion": {"groupVersion": "ray.io/v1", "version": "v1"},
}
APPS_GROUP = {
    "name": "apps",
    "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
    "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
}
RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "ray.io/v1",
    "resources": [
        {
            "name": "rayclusters",
            "singularName": "raycluster",
            "namespaced": True,
            "kind": "RayCluster",
            "verbs": ["get"],
        },
        {"name": "rayjobs", "singularName": "rayjob", "namespaced": True, "kind": "RayJob", "verbs": ["create", "get"]},
        {"name": "rayjobs/status", "singularName": "", "namespaced": True, "kind": "RayJob", "verbs": ["get"]},
    ],
}


def status_body(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@functools.cache
def rayjobs_crd() -> dict:
    """The pinned CRD, as the API server returns it (JSON of the same object)."""
    text = (ROOT / "deploy" / "crds" / "ray.io_rayjobs.yaml").read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class ApiServer(BaseHTTPRequestHandler):
    groups: list = []  # noqa: RUF012 - set per test
    existing: set = set()  # noqa: RUF012
    crd_status = 200

    def log_message(self, *args):
        pass

    def answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/") == "/apis":
            return self.answer(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": self.groups})
        if self.path.rstrip("/") == "/apis/ray.io/v1":
            return self.answer(200, RESOURCES)
        name = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"):
            if self.crd_status != 200:
                return self.answer(self.crd_status, status_body(self.crd_status, "Forbidden", "cannot get CRDs"))
            return self.answer(200, rayjobs_crd())
        if "/rayjobs/" in self.path and name in self.existing:
            return self.answer(200, {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name}})
        return self.answer(404, status_body(404, "NotFound", f'rayjobs.ray.io "{name}" not found'))

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = body["metadata"]["name"]
        if name in self.existing:
            return self.answer(409, status_body(409, "AlreadyExists", f'rayjobs.ray.io "{name}" already exists'))
        self.existing.add(name)
        return self.answer(201, body)


@pytest.fixture
def api(tmp_path, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), ApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ApiServer.groups, ApiServer.existing, ApiServer.crd_status = [APPS_GROUP, RAY_GROUP], set(), 200
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "me", "user": {"token": "not-a-real-token"}}],
        "contexts": [
            {"name": "team", "context": {"cluster": "local", "user": "me", "namespace": "ml"}},
            {"name": "bare", "context": {"cluster": "local", "user": "me"}},
        ],
        "current-context": "team",
    }
    (tmp_path / "config").write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield server
    server.shutdown()


def test_namespace_from_the_current_context_a_named_context_or_the_flag(api):
    assert Kube(Settings()).namespace == "ml"
    assert Kube(Settings(kube_context="bare")).namespace == "default"
    assert Kube(Settings(kube_context="bare", namespace="prod")).namespace == "prod"


def test_an_unknown_context_or_no_kubeconfig_is_one_clear_line(api, monkeypatch, tmp_path):
    with pytest.raises(RaybakeError, match="no Kubernetes access"):
        Kube(Settings(kube_context="nope"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(RaybakeError, match=r"no Kubernetes access.*oc login"):
        Kube(Settings())


def test_in_a_pod_without_service_account_credentials_is_one_clear_line(api, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(RaybakeError, match="no Kubernetes access"):
        Kube(Settings())


def test_operator_present(api):
    kube = Kube(Settings())
    assert kube.served_versions() == ["v1", "v1alpha1"]
    assert sorted(kube.served_kinds()) == ["RayCluster", "RayJob"]
    kube.check_operator()


def test_operator_missing_is_refused(api):
    ApiServer.groups = [APPS_GROUP]
    with pytest.raises(RaybakeError, match="KubeRay operator is not installed") as refused:
        Kube(Settings()).check_operator()
    assert refused.value.code == 3


def test_crds_without_v1_are_refused(api):
    ApiServer.groups = [{**RAY_GROUP, "versions": [{"groupVersion": "ray.io/v1alpha1", "version": "v1alpha1"}]}]
    with pytest.raises(RaybakeError, match="not v1"):
        Kube(Settings()).check_operator()


def test_create_then_create_again_is_refused_and_a_missing_rayjob_is_named(api):
    kube = Kube(Settings())
    manifest = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "rb-1"}, "spec": {}}
    kube.create_rayjob(manifest)
    assert kube.rayjob("rb-1")["metadata"]["name"] == "rb-1"
    with pytest.raises(RaybakeError, match=r"already exists in namespace 'ml'.*--delete"):
        kube.create_rayjob(manifest)
    with pytest.raises(RaybakeError, match="no RayJob 'rb-2' in namespace 'ml'"):
        kube.rayjob("rb-2")


def test_an_api_server_that_is_down_is_one_clear_line(api):
    kube = Kube(Settings())
    api.shutdown()
    api.server_close()
    with pytest.raises(RaybakeError, match="cannot reach the Kubernetes API") as down:
        kube.check_operator()
    assert "\n" not in str(down.value)


def test_the_served_crd_is_read_and_a_manifest_it_declares_passes(api):
    kube = Kube(Settings())
    schema = kube.served_schema("rayjobs.ray.io")
    assert "deletionStrategy" in schema["properties"]["spec"]["properties"]
    manifest = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "rb"}, "spec": {"entrypoint": "x"}}
    kube.check_operator(manifest=manifest)
    manifest["spec"]["deletionStrategy2"] = {}
    with pytest.raises(RaybakeError, match=r"does not declare spec.deletionStrategy2"):
        kube.check_operator(manifest=manifest)


def test_a_user_who_may_not_read_crds_is_not_refused(api):
    ApiServer.crd_status = 403
    kube = Kube(Settings())
    assert kube.served_schema("rayjobs.ray.io") is None
    kube.check_operator(manifest={"spec": {"unknown": 1}})
