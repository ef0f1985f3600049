"""The CPU image built on a real engine: tags, skip, labels, versions, and failures that say where."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess

import pytest
from conftest import Built

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


def test_second_build_with_nothing_changed_is_skipped(settings: Settings, cpu_image: Built, base_image: str):
    again = image.plan(settings, variant="cpu", base_image=base_image, torch_index="", bake_model=True)
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
    assert config["User"] == "1000:0"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["RAYBAKE_IMAGE"] == cpu_image.plan.ref
    assert env["HF_HUB_OFFLINE"] == "1"
    assert run_in(cpu_image.plan.ref, "id", "-u").strip() == "1000"
    # HF_HOME is the non-root user's to write.
    run_in(cpu_image.plan.ref, "sh", "-c", 'touch "$HF_HOME/probe"')


def test_an_arbitrary_uid_in_group_0_has_a_home_and_writes_its_caches(cpu_image: Built, random_user: str):
    """OpenShift's restricted SCC: a UID with no passwd entry, group 0. Found here before the fix:
    HOME was /, HF_HOME a PermissionError, `ray start` failed on /.ray."""
    script = 'echo "$HOME"; for d in "$HOME" "$HF_HOME" "$HOME/.cache" "$PWD"; do touch "$d/probe-$$"; done; id -u'
    out = subprocess.run(
        ["docker", "run", "--rm", "--user", random_user, cpu_image.plan.ref, "sh", "-c", script],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out == ["/home/ray", random_user.split(":")[0]]


def test_versions_in_the_image_are_the_pins(cpu_image: Built):
    report = run_in(cpu_image.plan.ref, "python", "imagecheck.py")
    assert f"ray {pins()['ray']}" in report
    assert f"torch {pins()['torch']}" in report
    assert f"transformers {pins()['transformers']}" in report
    assert "cuda None" in report


def test_a_cuda_build_is_offered_no_cpu_wheel_and_its_check_refuses_a_cpu_torch(
    settings: Settings, cpu_image: Built, base_image: str
):
    """pip would rank the wheelhouse's 2.13.0+cpu above any index's 2.13.0: the cuda plan never serves
    it. And the build-time check that ends a cuda build fails on this image's CPU torch."""
    assert any(w.name.endswith(".whl") and "+cpu" in w.name for w in cpu_image.plan.wheels)
    cuda = image.plan(settings, variant="cuda", base_image=base_image, torch_index="", bake_model=True)
    assert not [w for w in cuda.wheels if "+cpu" in w.name]
    check = subprocess.run(
        ["docker", "run", "--rm", "-e", "VARIANT=cuda", cpu_image.plan.ref, "python", "imagecheck.py"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1
    assert "the cuda variant has a torch without CUDA" in check.stderr


def test_the_base_digest_is_in_the_plan_and_the_image_label(cpu_image: Built, base_image: str):
    base_id = inspect(base_image)["Id"]
    assert cpu_image.plan.base_digest == base_id
    labels = inspect(cpu_image.plan.ref)["Config"]["Labels"]
    assert labels["org.opencontainers.image.base.digest"] == base_id
    assert labels["org.opencontainers.image.base.name"] == base_image


def test_a_missing_base_image_is_refused_before_the_build_with_a_hint(settings: Settings):
    with pytest.raises(RaybakeError, match=r"'raybake-test/absent:0' is not on this engine.*docker-engine.sh"):
        image.plan(settings, variant="cpu", base_image="raybake-test/absent:0", torch_index="")


def test_no_credential_of_the_remote_or_index_reaches_the_image(
    settings: Settings, cpu_image: Built, base_image: str, tmp_path, monkeypatch
):
    """A checkout cloned as `https://user:SECRET@...` (some CI systems do): the built image's
    labels, environment and history (where every build argument a RUN saw is kept) hold no
    SECRET; and an index with a credential is refused before anything is built."""
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    git = ["git", "-C", str(tmp_path / "repo")]
    subprocess.run([*git, "remote", "add", "origin", "https://user:SECRET@example.invalid/x.git"], check=True)
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "repo" / ".git"))
    with pytest.raises(RaybakeError, match="carries a credential"):
        image.plan(settings, variant="cpu", base_image=base_image, torch_index="https://user:SECRET@example.invalid/")
    plan = image.plan(settings, variant="cpu", base_image=base_image, torch_index="", bake_model=True)
    # Its own name and state: the session's image stays as it is; only the label layers are new.
    plan = dataclasses.replace(plan, repository="raybake-credential-check")
    own = dataclasses.replace(settings, state_file=str(tmp_path / "state.json"))
    try:
        assert image.build(own, plan, out=io.StringIO()) is True
        found = inspect(plan.ref)
        assert found["Config"]["Labels"]["org.opencontainers.image.source"] == "https://example.invalid/x.git"
        history = image.docker_api().history(plan.ref)
        assert any("TORCH_REQUIREMENT" in step["CreatedBy"] for step in history), "history shows no build args"
        shown = json.dumps([found["Config"], found.get("ContainerConfig"), history])
        assert "SECRET" not in shown
    finally:
        image.docker_api().remove_image(plan.ref, force=True)
