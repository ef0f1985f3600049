"""Every RayJob raybake renders validates against the strict CRD schema of the pinned KubeRay."""

from __future__ import annotations

import copy
import dataclasses

import jsonschema
import pytest
import yaml
from crd import SHARED, crd_schema

from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.kube import manifests
from raybake.kube.manifests import Origin, label_value, rayjob, to_yaml
from raybake.spec import JobSpec
from raybake.versions import ray_version

pytestmark = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the KubeRay CRDs are not beside the checkout ({SHARED} is absent)"
)

SPEC = JobSpec(corpus="s3://bucket/corpus", output="s3://bucket/out/j1", name="raybake-embed-20261125-120000")
ORIGIN = Origin(git_sha="0123456789abcdef0123456789abcdef01234567", user="Ada Lovelace@corp")
IMAGE = "registry.example/raybake@sha256:" + "a" * 64

VARIANTS = {
    "cpu": Settings(),
    "gpus": Settings(gpus=4),
    "logical-gpus": Settings(cpu_workers=2, logical_gpus=1),
    "pvc-deadlines": Settings(pvc="corpus-claim", active_deadline_s=3600, pre_running_deadline_s=600),
    "no-deadlines": Settings(pre_running_deadline_s=None),
}


def render(settings: Settings = VARIANTS["cpu"], **kw):
    kw.setdefault("runtime_env", {"env_vars": {"RAYBAKE_GIT_SHA": ORIGIN.git_sha}})
    return rayjob(SPEC, image=IMAGE, ray_version=ray_version(), settings=settings, origin=ORIGIN, **kw)


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft7Validator(crd_schema("rayjobs"))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("interactive", [False, True])
def test_every_rendered_rayjob_validates(validator, variant, interactive):
    manifest = render(VARIANTS[variant], interactive=interactive)
    validator.validate(manifest)
    # What `--dry-run` prints is the same document.
    validator.validate(yaml.safe_load(to_yaml(manifest)))


def test_a_misspelt_field_is_rejected(validator):
    manifest = render()
    manifest["spec"]["shutdownAfterJobFinish"] = manifest["spec"].pop("shutdownAfterJobFinishes")
    with pytest.raises(jsonschema.ValidationError, match="shutdownAfterJobFinish"):
        validator.validate(manifest)


def test_a_misspelt_field_deep_in_the_pod_template_is_rejected(validator):
    manifest = render()
    container = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    container["resource"] = container.pop("resources")
    with pytest.raises(jsonschema.ValidationError, match="resource"):
        validator.validate(manifest)


def test_the_schema_is_strict_but_keeps_free_form_maps(validator):
    manifest = render()
    manifest["metadata"]["labels"]["anything.example/at-all"] = "yes"
    manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["any-flag"] = "1"
    validator.validate(manifest)


def test_gpu_workers_one_per_gpu_with_nvidia_limits():
    group = render(Settings(gpus=3))["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (3, 3, 3)
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert "num-gpus" not in group["rayStartParams"]


def test_cpu_workers_advertise_logical_gpus_without_asking_kubernetes_for_any():
    group = render(Settings(cpu_workers=2, logical_gpus=1))["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == 2
    assert group["rayStartParams"] == {"num-gpus": "1"}
    assert "nvidia.com/gpu" not in group["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_image_ray_version_entrypoint_and_lifetime():
    manifest = render()
    job = manifest["spec"]
    cluster = job["rayClusterSpec"]
    assert cluster["rayVersion"] == ray_version()
    pods = [cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {IMAGE}
    assert {p["spec"]["containers"][0]["imagePullPolicy"] for p in pods} == {"IfNotPresent"}
    assert job["entrypoint"] == SPEC.command()
    assert job["shutdownAfterJobFinishes"] is True
    assert job["submissionMode"] == "K8sJobMode"
    assert yaml.safe_load(job["runtimeEnvYAML"]) == {"env_vars": {"RAYBAKE_GIT_SHA": ORIGIN.git_sha}}


def test_interactive_mode_leaves_the_submission_to_the_client():
    job = render(interactive=True)["spec"]
    assert job["submissionMode"] == "InteractiveMode"
    assert "runtimeEnvYAML" not in job


def test_retries_are_refused_where_kuberay_refuses_them():
    assert render(Settings(backoff_limit=2))["spec"]["backoffLimit"] == 2
    with pytest.raises(RaybakeError, match="submitted once"):
        render(Settings(backoff_limit=2), interactive=True)


def test_label_values_are_valid_kubernetes_label_values():
    pattern = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
    labels = render()["metadata"]["labels"]
    assert labels["raybake.io/user"] == "Ada-Lovelace-corp"
    for value in [*labels.values(), label_value("-" * 10 + "x" * 80 + "!"), label_value("__")]:
        assert len(value) <= 63
        assert __import__("re").match(pattern, value), value


@pytest.mark.parametrize("name", ["Raybake-Upper", "x" * 48, "ends-with-", "has_underscore", "1starts-with-digit"])
def test_names_kuberay_would_reject_are_refused(name):
    with pytest.raises(RaybakeError, match="cannot name a RayJob"):
        rayjob(
            dataclasses.replace(SPEC, name=name),
            image=IMAGE,
            ray_version="2.60.0",
            settings=Settings(),
            origin=ORIGIN,
        )


def test_dry_run_redacts_secrets_in_env_and_runtime_env():
    secret = "s3cr3t-value-never-printed"
    manifest = render(runtime_env={"env_vars": {"HF_TOKEN": secret, "PLAIN": "visible"}})
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": secret})
    original = copy.deepcopy(manifest)
    printed = to_yaml(manifest)
    assert secret not in printed
    assert printed.count(manifests.REDACTED) == 2
    assert "visible" in printed
    assert manifest == original  # redaction copies; the applied manifest keeps its values


@pytest.mark.parametrize("settings", [Settings(gpus=-1), Settings(cpu_workers=0), Settings(logical_gpus=-2)])
def test_impossible_worker_counts_are_refused(settings):
    with pytest.raises(RaybakeError, match="must be at least"):
        render(settings)
