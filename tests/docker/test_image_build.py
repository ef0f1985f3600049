"""The CPU image built on a real engine: tags, skip, labels, versions, and failures that say where."""

from __future__ import annotations

import io
import subprocess

import docker
import pytest
from conftest import BASE_IMAGE, Built

from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.image import build as image
from raybake.versions import ROOT, pins, ray_version


def inspect(ref: str) -> dict:
    return image.docker_api().inspect_image(ref)


def run_in(ref: str, *command: str) -> str:
    return subprocess.run(["docker", "run", "--rm", ref, *command], check=True, capture_output=True, text=True).stdout


def test_image_is_tagged_by_content_and_commit(cpu_image: Built):
    plan = cpu_image.plan
    assert plan.ref == f"raybake:cpu-{plan.content_hash[:12]}"
    tagged = inspect(plan.ref)
    if plan.git_ref:
        assert inspect(plan.git_ref)["Id"] == tagged["Id"]


def test_second_build_with_nothing_changed_is_skipped(settings: Settings, cpu_image: Built):
    again = image.plan(settings, variant="cpu", base_image=BASE_IMAGE, torch_index="", bake_model=True)
    assert again.ref == cpu_image.plan.ref
    out = io.StringIO()
    assert image.build(settings, again, out=out) is False
    assert "build skipped" in out.getvalue()


def test_labels_user_and_environment(cpu_image: Built):
    config = inspect(cpu_image.plan.ref)["Config"]
    labels = config["Labels"]
    assert labels["io.raybake.variant"] == "cpu"
    assert labels["io.raybake.ray-version"] == ray_version()
    # The commit that first built this content: a later commit with the same inputs skips the build.
    revision = labels["org.opencontainers.image.revision"]
    assert subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=ROOT).returncode == 0
    assert config["User"] == "1000:100"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["RAYBAKE_IMAGE"] == cpu_image.plan.ref
    assert env["HF_HUB_OFFLINE"] == "1"
    assert run_in(cpu_image.plan.ref, "id", "-u").strip() == "1000"
    # HF_HOME is the non-root user's to write.
    run_in(cpu_image.plan.ref, "sh", "-c", 'touch "$HF_HOME/probe"')


def test_versions_in_the_image_are_the_pins(cpu_image: Built):
    report = run_in(cpu_image.plan.ref, "python", "imagecheck.py")
    assert f"ray {pins()['ray']}" in report
    assert f"torch {pins()['torch']}" in report
    assert f"transformers {pins()['transformers']}" in report
    assert "cuda None" in report


def test_cuda_variant_with_a_cpu_torch_fails_at_the_check_step(settings: Settings, cpu_image: Built):
    """The same layers as the CPU image, but a CUDA label: the build-time check must refuse it."""
    plan = image.plan(settings, variant="cuda", base_image=BASE_IMAGE, torch_index="", bake_model=True)
    with pytest.raises(RaybakeError, match=r"at 'Step \d+/\d+ : RUN .*imagecheck.py'.*non-zero code"):
        image.build(settings, plan, out=io.StringIO())
    with pytest.raises(docker.errors.ImageNotFound):
        inspect(plan.ref)


def test_missing_base_image_fails_at_from_with_a_hint(settings: Settings):
    plan = image.plan(settings, variant="cpu", base_image="raybake-test/absent:0", torch_index="")
    with pytest.raises(RaybakeError, match=r"at 'Step \d+/\d+ : FROM .*'raybake-test/absent:0'.*docker-engine.sh"):
        image.build(settings, plan, out=io.StringIO())
