"""`--cluster NAME`: the head service, its pod and a port-forward through the real Kubernetes client.

A stand-in API server (aiohttp, on loopback) answers the service and pod reads and speaks the
API server's port-forward protocol (a websocket, channel 0 data, channel 1 errors) to the real
Ray head of the session. Only the API server is stood in for: the kubernetes client, raybake's
relay and Ray's job API are real.
"""

from __future__ import annotations

import asyncio
import struct
import threading

import pytest
from aiohttp import WSMsgType, web
from fakekube import use_stand_in_api

from raybake.clusters.address import through_port_forward
from raybake.config import Settings
from raybake.versions import ray_version

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


def api_server(dashboard_port: int, seen: list[str]) -> web.Application:
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

    app = web.Application()
    app[SOCKETS] = set()
    app.router.add_get("/api/v1/namespaces/{ns}/services/{name}", service)
    app.router.add_get("/api/v1/namespaces/{ns}/pods", pods)
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/portforward", portforward)
    return app


@pytest.fixture
def kubeconfig(ray_head, tmp_path, monkeypatch):
    seen: list[str] = []
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(api_server(ray_head.dashboard_port, seen))
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
