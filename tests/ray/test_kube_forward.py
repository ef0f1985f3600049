"""`--cluster NAME`: the head service, its pod and a port-forward through the real Kubernetes client.

A stand-in API server (aiohttp, on loopback) answers the service and pod reads and speaks the
API server's port-forward protocol (a websocket, channel 0 data, channel 1 errors) to the real
Ray head of the session. Only the API server is stood in for: the kubernetes client, raybake's
relay and Ray's job API are real.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import threading

import pytest
import yaml
from aiohttp import WSMsgType, web
from fakekube import use_stand_in_api

from raybake.clusters.address import through_port_forward
from raybake.config import Settings
from raybake.versions import ROOT, ray_version

IMAGE = "registry.example/raybake@sha256:" + "f" * 64
TOKEN_ENV = "RAYBAKE_TEST_RAY_TOKEN"
HEAD_LABELS = {"ray.io/cluster": "prod", "ray.io/node-type": "head"}
SOCKETS = web.AppKey("sockets", set)


def head_pod() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "prod-head-x7k2p", "namespace": "ml", "labels": HEAD_LABELS},
        "spec": {"containers": [{"name": "ray-head", "image": IMAGE}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "ray-head", "image": IMAGE, "imageID": IMAGE, "ready": True, "restartCount": 0}
            ],
        },
    }


def team_cluster() -> dict:
    """The RayCluster `invoke cluster up` made, as the API server returns it (with a status)."""
    from raybake.kube.raycluster import raycluster

    made = raycluster("prod", image=IMAGE, ray_version=ray_version(), settings=Settings(image=IMAGE, max_gpus=2))
    made["metadata"].update({"namespace": "ml", "uid": "9b1c", "resourceVersion": "7"})
    return {**made, "status": {"state": "ready", "head": {"podName": "prod-head-x7k2p"}}}


def api_server(dashboard_port: int, seen: list[str], token: str) -> web.Application:
    async def secret(request):
        seen.append(request.path)
        # A team cluster's token Secret as `invoke cluster up` creates it (manifests.token_secret).
        data = {"auth_token": base64.b64encode(token.encode()).decode()}
        return web.json_response({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": data})

    async def service(request):
        seen.append(request.path)
        return web.json_response(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": request.match_info["name"], "namespace": "ml"},
                "spec": {"selector": HEAD_LABELS, "ports": [{"name": "dashboard", "port": 8265}]},
            }
        )

    async def pods(request):
        seen.append(f"{request.path}?labelSelector={request.query.get('labelSelector')}")
        return web.json_response({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [head_pod()]})

    async def portforward(request):
        port = int(request.query["ports"])
        seen.append(f"{request.path}?ports={port}")
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(request)
        request.app[SOCKETS].add(ws)
        # The first frame of each channel names the port: data channel 0, error channel 1.
        for channel in (0, 1):
            await ws.send_bytes(bytes([channel]) + struct.pack("<H", port))
        reader, writer = await asyncio.open_connection("127.0.0.1", dashboard_port)

        async def upstream():
            async for msg in ws:
                if msg.type == WSMsgType.BINARY and msg.data[:1] == b"\x00":
                    writer.write(msg.data[1:])
                    await writer.drain()
            writer.close()

        async def downstream():
            while chunk := await reader.read(65536):
                await ws.send_bytes(b"\x00" + chunk)
            await ws.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)
        return ws

    async def rayclusters(request):
        seen.append(f"{request.method} {request.path}")
        if request.method == "PATCH":
            seen.append(await request.text())
        return web.json_response(team_cluster())

    async def discovery(request):
        # API discovery as an API server with KubeRay's CRDs installed answers it.
        seen.append(request.path)
        if request.path.rstrip("/") == "/apis":
            version = {"groupVersion": "ray.io/v1", "version": "v1"}
            group = {"name": "ray.io", "versions": [version], "preferredVersion": version}
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]})
        resources = [
            {"name": plural, "singularName": plural[:-1], "namespaced": True, "kind": kind, "verbs": ["get", "patch"]}
            for plural, kind in (("rayclusters", "RayCluster"), ("rayjobs", "RayJob"))
        ]
        return web.json_response({"kind": "APIResourceList", "groupVersion": "ray.io/v1", "resources": resources})

    async def crd(request):
        seen.append(request.path)
        plural = request.match_info["name"].split(".")[0]
        return web.json_response(yaml.safe_load((ROOT / "deploy" / "crds" / f"ray.io_{plural}.yaml").read_text()))

    app = web.Application()
    app[SOCKETS] = set()
    for path in ("/apis", "/apis/", "/apis/ray.io/v1", "/apis/ray.io/v1/"):
        app.router.add_get(path, discovery)
    app.router.add_get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", crd)
    app.router.add_route("*", "/apis/ray.io/v1/namespaces/{ns}/rayclusters/{name}", rayclusters)
    app.router.add_get("/api/v1/namespaces/{ns}/services/{name}", service)
    app.router.add_get("/api/v1/namespaces/{ns}/secrets/{name}", secret)
    app.router.add_get("/api/v1/namespaces/{ns}/pods", pods)
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/portforward", portforward)
    return app


@pytest.fixture
def kubeconfig(ray_head, tmp_path, monkeypatch):
    seen: list[str] = []
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(api_server(ray_head.dashboard_port, seen, ray_head.token or ""))
    loop.run_until_complete(runner.setup())
    # Port 0 and read back: a port picked beforehand could be taken by one of Ray's processes.
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    threading.Thread(target=loop.run_forever, daemon=True).start()
    use_stand_in_api(tmp_path, monkeypatch, port)
    monkeypatch.setenv(TOKEN_ENV, ray_head.token or "")
    yield seen

    async def stop():
        # Streams a pooled HTTP connection keeps open would hold the server's shutdown.
        for ws in list(runner.app[SOCKETS]):
            await ws.close()
        await runner.cleanup()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=120)
    loop.call_soon_threadsafe(loop.stop)


def test_a_cluster_by_name_is_reached_through_its_head_service_and_checked(kubeconfig):
    from raybake.kube.client import Kube

    settings = Settings(backend="address", cluster="prod", token_env=TOKEN_ENV, image=IMAGE)
    with through_port_forward(settings, Kube(settings), "prod") as chosen:
        assert chosen.url.startswith("http://127.0.0.1:")
        assert chosen.cluster_images == {IMAGE}
        chosen.check_cluster()  # Ray version and image, both through the forward
        assert chosen.ray_version() == ray_version()
        assert isinstance(chosen.jobs(), list)
        forward = chosen.forward
    assert forward.closed
    assert "/api/v1/namespaces/ml/services/prod-head-svc" in kubeconfig
    assert any(s.endswith("portforward?ports=8265") and "/pods/prod-head-x7k2p/" in s for s in kubeconfig)


def test_a_rayjobs_head_gets_the_jobs_own_token_from_this_clients_state_never_the_users(
    kubeconfig, monkeypatch, tmp_path, ray_head
):
    """The user's token is for the cluster they named; a RayJob's head, whose image a workflow input
    picks, gets the token raybake made for that job and kept in its state: no Secret is read."""
    from raybake import state
    from raybake.clusters.rayjob import RayJobBackend
    from raybake.kube.client import Kube

    monkeypatch.setenv("RAY_AUTH_TOKEN", "planted-user-token-XYZ")
    settings = Settings(backend="rayjob", image=IMAGE, state_file=str(tmp_path / "state.json"))
    state.record_job_token(settings, "ml", "raybake-embed-1", ray_head.token or "")
    chosen = RayJobBackend(settings, kube=Kube(settings))
    with chosen._ray("prod", "raybake-embed-1") as ray:
        assert ray.token != "planted-user-token-XYZ"
        assert ray.ray_version() == ray_version()  # the head accepted the job's own token
    assert not [path for path in kubeconfig if "/secrets" in path]


def test_a_team_cluster_by_name_uses_its_own_token_and_image_and_sizes_the_job_to_its_gpus(kubeconfig, monkeypatch):
    """`invoke submit --cluster prod` on a cluster `invoke cluster up` made: the token from the
    cluster's Secret (not the user's), its image accepted though this checkout pushed another, and
    the job asking for the GPU group's workers, which the autoscaler then adds."""
    from raybake.clusters import team
    from raybake.kube.client import Kube
    from raybake.spec import JobSpec

    monkeypatch.setenv("RAY_AUTH_TOKEN", "planted-user-token-XYZ")
    other = "registry.example/raybake@sha256:" + "0" * 64
    settings = Settings(backend="address", cluster="prod", image=other)
    with team.backend(settings, Kube(settings), "prod") as chosen:
        assert isinstance(chosen, team.TeamClusterBackend)
        assert chosen.token != "planted-user-token-XYZ"
        assert chosen.expected_image == IMAGE
        chosen.check_cluster()  # no --allow-image-mismatch: the cluster's own image is the one expected
        placed = chosen.prepare(JobSpec(corpus="s3://bucket/c", output="s3://bucket/o", name="raybake-embed-1"))
        assert placed.runs.job_args[-6:] == ("--workers", "2", "--cpus-per-worker", "8", "--device", "cuda")
        # What `invoke submit --cluster prod --dry-run` prints: this cluster, its own image.
        assert chosen.describe(placed).startswith(f"# RayCluster prod: image {IMAGE} (the cluster's own)")
    assert "/api/v1/namespaces/ml/secrets/prod-ray-token" in kubeconfig


def test_upgrade_is_refused_while_a_job_runs_on_the_cluster_and_goes_ahead_with_force(kubeconfig, ray_head):
    """The jobs come from the real Ray head behind the port-forward; the patch goes to the API."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from raybake.clusters.team import TeamCluster
    from raybake.errors import RaybakeError
    from raybake.kube.client import Kube

    newer = "registry.example/raybake@sha256:" + "e" * 64
    settings = Settings(image=newer, max_gpus=2)
    client = JobSubmissionClient(ray_head.url, headers={"Authorization": f"Bearer {ray_head.token}"})
    job = client.submit_job(entrypoint="python -c 'import time; time.sleep(120)'")
    try:
        wait_for(lambda: client.get_job_status(job) == JobStatus.RUNNING)
        with pytest.raises(RaybakeError, match=rf"refused: 1 job\(s\) still pending or running on prod \({job}\)"):
            TeamCluster(settings, "prod", kube=Kube(settings)).upgrade()
        assert not any(s.startswith("PATCH") for s in kubeconfig)
        said = TeamCluster(settings, "prod", kube=Kube(settings)).upgrade(force=True)
        assert f"image {IMAGE} -> {newer}" in said
        assert any(s.startswith("PATCH /apis/ray.io/v1/namespaces/ml/rayclusters/prod") for s in kubeconfig)
        assert newer in kubeconfig[-1]
    finally:
        client.stop_job(job)


def wait_for(condition, timeout_s: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
