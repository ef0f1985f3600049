"""The Role docs/clusters.md documents is exactly what the code asks the Kubernetes API for.

Two steps. The real kubernetes client behind raybake.kube.client.Kube talks to a recording
stand-in API server (loopback HTTP): each Kube method's requests, mapped to (resource, verb) as
the API server's authorizer maps them, equal tests/rbac.ACCESS. Then each task's code path runs
over a FakeKube that records the Kube methods it calls; their ACCESS, per task, equals the
documented table, and deploy/rbac/role.yaml grants the union of the table, nothing more.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from fakekube import FakeKube, use_stand_in_api
from rbac import ACCESS, CLUSTER_SCOPED, DISCOVERY, TEAM_TASKS, documented, rbac_of, role_rules

from raybake import state
from raybake.clusters import address, rayjob, team
from raybake.clusters.rayjob import RayJobBackend
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.kube import manifests, prepull
from raybake.kube.client import Kube
from raybake.spec import JobSpec
from raybake.submit import submit

SHAPES = Path(__file__).parent / "shapes"
STATUSES = yaml.safe_load((SHAPES / "rayjobs.yaml").read_text())
IMAGE = "registry.example/raybake@sha256:" + "c" * 64
SPEC = JobSpec(corpus="s3://bucket/corpus", output="s3://bucket/out", name="raybake-embed-1")
ROLE = Path(__file__).resolve().parents[2] / "deploy" / "rbac" / "role.yaml"
TEAM_ROLES = ROLE.with_name("team-cluster.yaml")


class Recorder(BaseHTTPRequestHandler):
    """Answers as an API server would, just enough for the client to parse; records each request."""

    seen: list[tuple[str, str, str]]
    made: set[str]

    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        path, _, query = self.path.partition("?")
        path = path.rstrip("/") or "/"
        self.seen.append((self.command, path, query))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        status, answer = 200, body
        if path == "/apis":
            version = {"groupVersion": "ray.io/v1", "version": "v1"}
            answer = {"groups": [{"name": "ray.io", "versions": [version], "preferredVersion": version}]}
        elif path == "/apis/ray.io/v1":
            resource = {"name": "rayjobs", "singularName": "rayjob", "namespaced": True, "kind": "RayJob", "verbs": []}
            answer = {"groupVersion": "ray.io/v1", "resources": [resource]}
        elif "customresourcedefinitions" in path:
            answer = {"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
        elif path.endswith("/portforward"):
            status, answer = 403, {"kind": "Status", "code": 403}
        elif path.endswith(("/pods", "/events", "/rayjobs", "/workloads")):
            answer = {"items": [{"metadata": {"name": "h"}, "status": {"phase": "Running"}}]}
            if path.endswith("/events"):
                answer = {"items": []}
        elif "/services/" in path:
            answer = {"metadata": {"name": "s"}, "spec": {"selector": {"ray.io/cluster": "c"}}}
        elif self.command == "POST":
            if path in self.made:
                status, answer = 409, {"kind": "Status", "code": 409}
            self.made.add(path)
        elif self.command in ("GET", "DELETE", "PATCH"):
            answer = {"metadata": {"name": path.rsplit("/", 1)[-1]}}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


@pytest.fixture
def api(tmp_path, monkeypatch):
    seen: list[tuple[str, str, str]] = []
    handler = type("Handler", (Recorder,), {"seen": seen, "made": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    use_stand_in_api(tmp_path, monkeypatch, server.server_address[1])
    yield Kube(Settings()), seen
    server.shutdown()


def permissions(seen: list[tuple[str, str, str]]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for method, path, query in seen:
        found |= rbac_of(method, path, query) or set()
    return found


def test_the_authorizers_mapping_of_requests():
    assert rbac_of("GET", "/apis") is None and rbac_of("GET", "/apis/ray.io/v1") is None
    assert rbac_of("GET", "/apis/ray.io/v1/namespaces/ml/rayjobs/j") == {("rayjobs.ray.io", "get")}
    assert rbac_of("GET", "/apis/ray.io/v1/namespaces/ml/rayjobs", "labelSelector=x") == {("rayjobs.ray.io", "list")}
    assert rbac_of("GET", "/api/v1/namespaces/ml/pods", "watch=true") == {("pods", "watch")}
    assert rbac_of("PUT", "/apis/apps/v1/namespaces/ml/daemonsets/d") == {("daemonsets.apps", "update")}
    assert rbac_of("DELETE", "/api/v1/namespaces/ml/secrets") == {("secrets", "deletecollection")}
    assert rbac_of("GET", "/api/v1/namespaces/ml/pods/p/portforward") == {
        ("pods/portforward", "get"),
        ("pods/portforward", "create"),
    }


def owner() -> dict:
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j", "uid": "u-1"}}


CALLS = {
    "served_schema": lambda kube: kube.served_schema("rayjobs.ray.io"),
    "create_rayjob": lambda kube: kube.create_rayjob({"metadata": {"name": "j"}}),
    "create_owned Secret": lambda kube: kube.create_owned(manifests.token_secret("j", "t"), owner()),
    "create_owned NetworkPolicy": lambda kube: kube.create_owned(manifests.network_policy("j"), owner()),
    "rayjob": lambda kube: kube.rayjob("j"),
    "patch_rayjob": lambda kube: kube.patch_rayjob("j", {"spec": {"jobId": "j"}}),
    "delete_rayjob": lambda kube: kube.delete_rayjob("j"),
    "rayjobs": lambda kube: kube.rayjobs("app.kubernetes.io/managed-by=raybake"),
    # The second apply finds the first (409) and replaces it.
    "apply_daemonset": lambda kube: [kube.apply_daemonset(prepull.daemonset(IMAGE, settings=Settings())) for _ in "12"],
    "pods": lambda kube: kube.pods("ray.io/cluster=c"),
    "events": lambda kube: kube.events("j", "c"),
    "head_pod": lambda kube: kube.head_pod("c"),
    "forward": lambda kube: kube.forward("p", 8265)._connect(),  # one stream, as a connection opens it
    "raycluster": lambda kube: kube.raycluster("c"),
    "create_raycluster": lambda kube: kube.create_raycluster({"metadata": {"name": "c"}}),
    "patch_raycluster": lambda kube: kube.patch_raycluster("c", {"spec": {}}),
    "delete_raycluster": lambda kube: kube.delete_raycluster("c"),
    "secret_value": lambda kube: kube.secret_value("c-ray-token", manifests.TOKEN_KEY),
    "delete_secret": lambda kube: kube.delete_secret("c-ray-token"),
    "workloads": lambda kube: kube.workloads("u-1"),
}


@pytest.mark.parametrize("method", sorted(CALLS))
def test_each_kube_method_asks_for_what_access_says(api, method):
    kube, seen = api
    try:
        CALLS[method](kube)
    except Exception:  # noqa: BLE001 - the stand-in refuses the port-forward; its request is what counts
        assert method == "forward"
    assert permissions(seen) == ACCESS[method]


def test_discovery_reads_no_resource(api):
    kube, seen = api
    kube.served_versions()
    kube.served_kinds()
    assert seen and permissions(seen) == set()


def test_access_names_every_kube_method_that_reaches_the_api():
    reaching = {n for n, v in vars(Kube).items() if callable(v) and not n.startswith("_")} - {"check_operator"}
    assert {m.split()[0] for m in ACCESS} | set(DISCOVERY) == reaching


class Recording(FakeKube):
    """A FakeKube that records which Kube methods a code path calls (create_owned with its kind)."""

    def __init__(self, **kw):
        super().__init__(connect=lambda: None, **kw)
        self.calls: set[str] = set()
        for name in {m.split()[0] for m in ACCESS} | set(DISCOVERY):
            if name != "create_owned" and hasattr(self, name):
                setattr(self, name, self._recorded(name, getattr(self, name)))

    def _recorded(self, name, method):
        def call(*args, **kwargs):
            self.calls.add(name)
            return method(*args, **kwargs)

        return call

    def create_owned(self, manifest, owner):
        self.calls.add(f"create_owned {manifest['kind']}")
        super().create_owned(manifest, owner)

    def apply_daemonset(self, manifest):
        self.calls.add("apply_daemonset")


class NoRay:
    """The Ray side of a port-forward, which these tests do not reach: only Kubernetes calls count."""

    client = SimpleNamespace(get_job_logs=lambda job_id: "log")

    def __init__(self, settings, url, *, forward=None, **kw):
        self.forward = forward

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.forward.close()

    def ready(self):
        pass

    def submit(self, placed):
        return placed.name

    def stream_logs(self, job_id):
        pass

    def jobs(self):
        return []


def run(task: str, tmp_path: Path, monkeypatch) -> set[str]:
    """Every code path of `task` (success and the failures that clean up), as the Kube calls made."""
    settings = Settings(backend="rayjob", image=IMAGE, network_policy=True)
    calls: set[str] = set()

    def backend(statuses, **kw):
        kube = Recording(statuses=[STATUSES[s] for s in statuses], **kw)
        return RayJobBackend(settings, kube=kube), kube

    def known(chosen, kube):
        kube.created.append(chosen.manifest(chosen.prepare(SPEC)))
        state.record_job_token(settings, "ml", SPEC.name, "t")

    def queued(act, *, made: bool) -> set[str]:
        """A RayJob in a Kueue queue, which Kueue admits at the first look at its Workload;
        `made`: the RayJob exists already (else the act makes it)."""
        kube = Recording(statuses=[STATUSES[s] for s in ("initializing", "running", "succeeded")])
        chosen = RayJobBackend(dataclasses.replace(settings, kueue_queue="team-a"), kube=kube)
        if made:
            known(chosen, kube)
        look = kube.workloads

        def admitted(uid):
            kube.created[-1]["spec"]["suspend"] = False
            return look(uid)

        kube.workloads = admitted
        act(chosen)
        return kube.calls

    if task == "submit --backend rayjob":
        chosen, kube = backend(["initializing", "running", "succeeded"])
        submit(chosen, SPEC)
        calls |= kube.calls
        (tmp_path / "corpus").mkdir(exist_ok=True)
        (tmp_path / "corpus" / "a.txt").write_text("doc")
        local = JobSpec(corpus=str(tmp_path / "corpus"), output="s3://b/o", name="raybake-embed-2")
        chosen, kube = backend(["waiting", "running", "succeeded"])
        submit(chosen, local)
        calls |= kube.calls
        # A companion that cannot be made takes the RayJob with it.
        chosen, kube = backend(["new"])
        kube.create_owned = lambda manifest, owner: (_ for _ in ()).throw(RaybakeError("403", 3))
        with pytest.raises(RaybakeError):
            chosen.submit(chosen.prepare(SPEC))
        calls |= kube.calls
        calls |= queued(lambda chosen: submit(chosen, SPEC), made=False)
    elif task == "status --backend rayjob":
        chosen, kube = backend(["running"])
        known(chosen, kube)
        chosen.status(SPEC.name)
        calls |= kube.calls
        calls |= queued(lambda chosen: chosen.status(SPEC.name), made=True)
    elif task == "logs --backend rayjob":
        for follow in (False, True):
            chosen, kube = backend(["initializing", "running", "succeeded"])
            known(chosen, kube)
            chosen.follow(SPEC.name) if follow else chosen.logs(SPEC.name)
            calls |= kube.calls
    elif task == "stop --backend rayjob":
        for delete in (False, True):
            chosen, kube = backend(["running"])
            known(chosen, kube)
            chosen.stop(SPEC.name, delete=delete)
            calls |= kube.calls
    elif task == "jobs --backend rayjob":
        chosen, kube = backend(["running"])
        chosen.jobs()
        calls |= kube.calls
    elif task == "prepull":
        kube = Recording()
        monkeypatch.setattr("raybake.kube.client.Kube", lambda settings: kube)
        prepull.apply(prepull.daemonset(IMAGE, settings=settings), settings=settings)
        calls |= kube.calls
    elif task == "--cluster NAME":
        # A RayCluster raybake did not make: the user's token, the image this checkout pushed.
        kube = Recording()
        with team.backend(Settings(backend="address", cluster="c"), kube, "c"):
            pass
        calls |= kube.calls
    elif task in TEAM_TASKS:
        calls |= team_paths(task, tmp_path)
    return calls


def team_paths(task: str, tmp_path: Path) -> set[str]:
    """The code paths of a team cluster's tasks, each on a Recording with the cluster made."""
    settings = Settings(image=IMAGE, max_gpus=2, network_policy=True)

    def made() -> Recording:
        kube = Recording()
        kube.rayclusters["c"] = made_cluster(settings)
        kube.owned.append(manifests.token_secret("c", "t"))
        kube.calls.clear()
        return kube

    calls: set[str] = set()
    if task == "cluster up":
        kube = Recording()
        team.TeamCluster(settings, "c", kube=kube).up()
        team.TeamCluster(settings, "c", kube=kube).up()  # it exists: said so
        failing = Recording()
        failing.create_owned = lambda manifest, owner: (_ for _ in ()).throw(RaybakeError("403", 3))
        with pytest.raises(RaybakeError):
            team.TeamCluster(settings, "c", kube=failing).up()  # undone: the cluster deleted again
        calls |= kube.calls | failing.calls
    elif task == "cluster upgrade":
        kube = made()
        newer = Settings(image=IMAGE.replace("c" * 64, "d" * 64), max_gpus=2, network_policy=True)
        team.TeamCluster(newer, "c", kube=kube).upgrade()
        calls |= kube.calls
    elif task == "cluster status":
        kube = made()
        team.TeamCluster(settings, "c", kube=kube).status()
        calls |= kube.calls
    elif task == "cluster down":
        kube = made()
        team.TeamCluster(settings, "c", kube=kube).down()
        calls |= kube.calls
    elif task == "submit --cluster TEAM":
        kube = made()
        with team.backend(Settings(backend="address", cluster="c"), kube, "c"):
            pass
        calls |= kube.calls
    return calls


def made_cluster(settings: Settings) -> dict:
    """The RayCluster `cluster up` made, as FakeKube holds it."""
    from raybake.kube.raycluster import raycluster
    from raybake.versions import ray_version

    found = raycluster("c", image=settings.image or IMAGE, ray_version=ray_version(), settings=settings)
    found["metadata"]["uid"] = "uid-1"
    return found


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setattr(rayjob, "POLL_S", 0)
    monkeypatch.setattr(state, "ROOT", tmp_path)
    monkeypatch.setattr(address, "AddressBackend", NoRay)
    return tmp_path, monkeypatch


@pytest.mark.parametrize("task", sorted(documented()))
def test_each_tasks_documented_role_is_what_its_code_paths_ask_for(isolated, task):
    called = run(task, *isolated)
    assert called, f"no code path for {task!r} in this test: add it to run()"
    used = set().union(*(ACCESS.get(call, set()) for call in called))
    assert used == documented()[task]


def test_the_role_in_deploy_grants_the_table_and_nothing_more():
    role = next(d for d in yaml.safe_load_all(ROLE.read_text()) if d["kind"] == "Role")
    union = set().union(*(rows for task, rows in documented().items() if task not in TEAM_TASKS))

    def key(rule):
        return rule["resources"], rule["apiGroups"]

    assert sorted(role["rules"], key=key) == sorted(role_rules(union), key=key)
    # No task reads a Secret back: each job's token stays on the client that made it.
    assert not any(r["resources"] == ["secrets"] and set(r["verbs"]) - {"create"} for r in role["rules"])
    # The CRD read (submit's field check) is cluster-wide: a ClusterRole, optional.
    assert {resource for resource, _verb in union} & CLUSTER_SCOPED <= {
        "customresourcedefinitions.apiextensions.k8s.io"
    }


def test_the_table_parses_rows_a_later_task_adds():
    row = "| `cluster up` | `rayclusters.ray.io` | create, get | x |"
    text = f"intro\n\n| Task | Resource | Verbs | Why |\n|---|---|---|---|\n{row}\n\nafter\n"
    assert documented(text) == {"cluster up": {("rayclusters.ray.io", "create"), ("rayclusters.ray.io", "get")}}


def test_the_team_clusters_roles_grant_their_rows_and_a_member_reads_only_the_clusters_token():
    roles = {d["metadata"]["name"]: d for d in yaml.safe_load_all(TEAM_ROLES.read_text()) if d["kind"] == "Role"}
    table = documented()

    def rules(role: dict) -> list:
        plain = [{k: v for k, v in rule.items() if k != "resourceNames"} for rule in role["rules"]]
        return sorted(plain, key=lambda r: (r["resources"], r["apiGroups"]))

    admin = set().union(*(table[t] for t in TEAM_TASKS if t.startswith("cluster ")))
    assert rules(roles["raybake-cluster-admin"]) == sorted(
        role_rules(admin), key=lambda r: (r["resources"], r["apiGroups"])
    )
    member = table["submit --cluster TEAM"]
    assert rules(roles["raybake-team-member"]) == sorted(
        role_rules(member), key=lambda r: (r["resources"], r["apiGroups"])
    )
    [secret] = [r for r in roles["raybake-team-member"]["rules"] if r["resources"] == ["secrets"]]
    assert secret["verbs"] == ["get"] and secret["resourceNames"] == ["team-a-ray-token"]
