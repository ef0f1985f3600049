"""`invoke push` against real registries: Debian's build of distribution on loopback, and a closed port.

The pushed image is a one-file image made here: the protocol is the same as for the job image,
without pushing two gigabytes on every run.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
from raycluster import free_port

from raybake import state
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.image import build as image

TAG = "cpu-0123456789ab"


@pytest.fixture
def registry(base_image, tmp_path: Path):
    """A registry on 127.0.0.1 (the engine treats loopback registries as plain HTTP)."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "log:\n  level: warn\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"docker-registry did not start (exit {process.poll()})")
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def tiny_image(ref: str) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        member = tarfile.TarInfo("hello.txt")
        member.size = 6
        tar.addfile(member, io.BytesIO(b"hello\n"))
    repository, tag = ref.rsplit(":", 1)
    image.docker_api().import_image_from_data(data.getvalue(), repository=repository, tag=tag)


@pytest.fixture
def built(base_image, tmp_path: Path):
    """Settings for a registry, whose state says a cpu image was built for it as `invoke build`
    records; the images it tags are removed afterwards."""
    refs: list[str] = []

    def make(registry: str) -> Settings:
        settings = Settings(registry=f"{registry}/org", state_file=str(tmp_path / "state.json"))
        ref = f"{image.repository(settings)}:{TAG}"
        tiny_image(ref)
        image.docker_api().tag(ref, image.repository(settings), f"{TAG}-gabcdef0")
        refs.extend([ref, f"{ref}-gabcdef0"] + [f"{image.repository(settings)}:{t}" for t in ("sha-abcdef0", "latest")])
        state.record_image(settings, "cpu", {"ref": ref, "git_ref": f"{ref}-gabcdef0", "content_hash": "0" * 64})
        return settings

    yield make
    api = image.docker_api()
    for ref in refs:
        if image.image_exists(api, ref):
            api.remove_image(ref, force=True)


def registry_digest(registry: str, repository: str, tag: str) -> str:
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers["Docker-Content-Digest"]


def test_push_records_the_digest_the_registry_serves(registry: str, built):
    settings = built(registry)
    out = io.StringIO()
    pushed = image.push(settings, variant="cpu", tags=["sha-abcdef0", "latest"], out=out)
    repository, digest = pushed.split("@")
    assert repository == f"{registry}/org/raybake"
    for tag in (TAG, f"{TAG}-gabcdef0", "sha-abcdef0", "latest"):
        assert registry_digest(registry, "org/raybake", tag) == digest
    assert state.image(settings, "cpu")["pushed"] == pushed
    order = [out.getvalue().index(f":{tag}\n") for tag in (TAG, "sha-abcdef0", "latest")]
    assert order == sorted(order)


def test_a_cache_image_is_pulled_when_the_registry_has_it(registry: str, built):
    settings = built(registry)
    ref = f"{image.repository(settings)}:{TAG}"
    image.push(settings, variant="cpu")
    image.docker_api().remove_image(f"{ref}-gabcdef0")
    image.docker_api().remove_image(ref)
    out = io.StringIO()
    assert image.pull_cache(image.docker_api(), ref, out) == [ref]
    assert image.image_exists(image.docker_api(), ref)
    missing = f"{image.repository(settings)}:buildcache"
    assert image.pull_cache(image.docker_api(), missing, out) == []
    assert f"no build cache from {missing}" in out.getvalue()


def test_push_to_a_closed_port_fails_with_the_engines_reason(built):
    settings = built(f"127.0.0.1:{free_port()}")
    with pytest.raises(RaybakeError, match="push failed: .*connection refused"):
        image.push(settings, variant="cpu")
    assert "pushed" not in state.image(settings, "cpu")


def test_an_image_named_for_another_registry_is_not_pushed(registry: str, built):
    settings = built(registry)
    elsewhere = dataclasses.replace(settings, registry=f"{registry}/other-org")
    with pytest.raises(RaybakeError, match="not named for the registry"):
        image.push(elsewhere, variant="cpu")
