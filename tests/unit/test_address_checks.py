"""The address backend's checks: Ray version, images by reference or digest, TLS settings, reachability."""

from __future__ import annotations

import pytest

from raybake.clusters.address import AddressBackend, image_problem, running_images, version_problem
from raybake.config import Settings
from raybake.errors import RaybakeError

DIGEST = "sha256:" + "d" * 64


def pod(image: str, image_id: str = "") -> dict:
    status = {"containerStatuses": [{"name": "ray-head", "image": image, "imageID": image_id}]}
    return {"spec": {"containers": [{"name": "ray-head", "image": image}]}, "status": status}


def test_ray_versions_must_match():
    assert version_problem(cluster="2.60.0", expected="2.60.0") is None
    assert "runs Ray 2.9.3, this checkout pins Ray 2.60.0" in version_problem(cluster="2.9.3", expected="2.60.0")


def test_a_tagged_pod_is_known_by_the_digest_the_kubelet_pulled():
    running = running_images([pod("registry.example/raybake:abc", f"registry.example/raybake@{DIGEST}")])
    assert running == {f"registry.example/raybake:abc@{DIGEST}"}
    assert image_problem(running=running, expected=f"registry.example/raybake@{DIGEST}") is None


def test_a_local_tag_matches_the_pod_that_runs_it_whatever_digest_the_node_gives_it():
    # kind: the image `kind load` put on the node, by tag; the kubelet adds the node's digest.
    running = running_images([pod("raybake:cpu-1a2b", f"registry.example/library/raybake@{DIGEST}")])
    assert image_problem(running=running, expected="raybake:cpu-1a2b") is None
    assert "raybake:cpu-1a2b" in image_problem(running=running, expected="raybake:cpu-9z9z")


def test_another_image_or_digest_is_a_mismatch():
    running = running_images([pod("registry.example/raybake:abc", "registry.example/raybake@sha256:" + "e" * 64)])
    assert "not the image built here" in image_problem(running=running, expected=f"registry.example/raybake@{DIGEST}")
    assert "raybake:old" in image_problem(running={"raybake:old"}, expected="raybake:new")


def test_nothing_to_compare_is_no_mismatch():
    assert image_problem(running=set(), expected="raybake:new") is None
    assert image_problem(running={"raybake:old"}, expected=None) is None


def test_tls_verification_settings():
    assert AddressBackend(Settings(), "https://ray.example:8265").verify is True
    assert AddressBackend(Settings(ca_bundle="/etc/ca.pem"), "https://ray.example:8265").verify == "/etc/ca.pem"
    assert AddressBackend(Settings(verify_tls=False), "https://ray.example:8265").verify is False


@pytest.mark.parametrize(
    ("url", "insecure_http", "sent"),
    [
        ("https://ray.example:8265", False, True),
        ("http://127.0.0.1:8265", False, True),
        ("http://localhost:8265", False, True),
        ("http://[::1]:8265", False, True),
        ("http://ray.example:8265", False, False),
        ("http://10.0.0.5:8265", False, False),
        ("http://10.0.0.5:8265", True, True),
    ],
)
def test_the_token_goes_over_tls_or_to_this_machine_unless_insecure_http(url, insecure_http, sent):
    chosen = AddressBackend(Settings(backend="address", insecure_http=insecure_http), url, token="t0ken")
    if sent:
        assert chosen.headers == {"Authorization": "Bearer t0ken"}
    else:
        with pytest.raises(RaybakeError, match="refusing to send the Ray token over plain http") as refused:
            chosen.headers
        assert "t0ken" not in str(refused.value)
    assert AddressBackend(Settings(backend="address"), "http://10.0.0.5:8265", token="").headers is None
