"""Every RayJob raybake renders validates against the strict CRD schema of the pinned KubeRay."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys

import jsonschema
import pytest
import yaml
from crd import crd_schema, kuberay_deletion_errors

from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.kube import manifests
from raybake.kube.manifests import Origin, label_value, rayjob, to_yaml
from raybake.spec import JobSpec
from raybake.versions import ROOT, ray_version

SPEC = JobSpec(corpus="s3://bucket/corpus", output="s3://bucket/out/j1", name="raybake-embed-20261125-120000")
ORIGIN = Origin(git_sha="0123456789abcdef0123456789abcdef01234567", user="Ada Lovelace@corp")
IMAGE = "registry.example/raybake@sha256:" + "a" * 64

VARIANTS = {
    "cpu": Settings(),
    "gpus": Settings(gpus=4),
    "logical-gpus": Settings(cpu_workers=2, logical_gpus=1),
    "pvc-deadlines": Settings(pvc="corpus-claim", active_deadline_s=3600, pre_running_deadline_s=600),
    "no-deadlines": Settings(pre_running_deadline_s=None),
    "gpus-placed": Settings(
        gpus=4,
        node_selector="nvidia.com/gpu.present=true,topology.kubernetes.io/zone=zone-a",
        tolerations="dedicated=ml:NoSchedule,spot:NoExecute",
        image_pull_secrets="registry-pull,mirror-pull",
        service_account="raybake-runner",
        priority_class="batch-low",
        hf_cache_pvc="hf-cache-claim",
    ),
    "keep-cluster": Settings(gpus=2, delete_workers_at_end=False, gpu_toleration=False),
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
    assert job["submissionMode"] == "HTTPMode"
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


@pytest.mark.parametrize("changes", [{"gpus": -1}, {"cpu_workers": 0}, {"logical_gpus": -2}], ids=str)
def test_impossible_worker_counts_are_refused(changes):
    with pytest.raises(RaybakeError, match="must be at least"):
        render(Settings(**changes))


def test_shell_text_in_the_runtime_env_is_refused():
    # KubeRay's submitter puts the runtime env JSON in bash double quotes, where $(...) still runs.
    with pytest.raises(RaybakeError, match="KubeRay's submitter would hand it to bash"):
        render(runtime_env={"env_vars": {"CORPUS": "a;touch${IFS}pwned $(touch pwned2)"}})


def test_every_cluster_asks_for_token_auth_from_the_jobs_own_secret(validator):
    manifest = render()
    name = manifest["metadata"]["name"]
    assert manifest["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token", "secretName": f"{name}-ray-token"}
    secret = manifests.token_secret(name, "t0ken")
    assert secret["metadata"]["name"] == f"{name}-ray-token" and secret["stringData"] == {"auth_token": "t0ken"}
    assert "t0ken" not in to_yaml(manifest, secret)


def test_the_network_policy_lets_only_the_jobs_own_pods_reach_its_head():
    manifest = render()
    name = manifest["metadata"]["name"]
    cluster = manifest["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]]
    assert all(p["metadata"]["labels"][manifests.JOB_LABEL] == name for p in pods)
    policy = manifests.network_policy(name)["spec"]
    assert policy["podSelector"]["matchLabels"] == {manifests.JOB_LABEL: name, "ray.io/node-type": "head"}
    assert policy["policyTypes"] == ["Ingress"]
    sources = [s["podSelector"]["matchLabels"] for s in policy["ingress"][0]["from"]]
    assert sources == [{manifests.JOB_LABEL: name}, {"ray.io/originated-from-cr-name": name}]


def test_annotations_show_urls_without_their_credentials():
    url = "https://tok@host/c.jsonl?X-Amz-Credential=AKIA1&X-Amz-Signature=planted-sig&x=1"
    spec = dataclasses.replace(SPEC, corpus=url, output="s3://b/o?sig=planted-sas")
    manifest = rayjob(spec, image=IMAGE, ray_version="2.60.0", settings=Settings(), origin=ORIGIN)
    printed = yaml.safe_dump(manifest["metadata"])
    assert "planted" not in printed and "AKIA1" not in printed and "tok@" not in printed
    assert manifest["metadata"]["annotations"]["raybake.io/corpus"].endswith("X-Amz-Signature=***&x=1")


def gpu_pod(manifest: dict) -> dict:
    return manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]


def all_pods(manifest: dict) -> list[dict]:
    cluster = manifest["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in cluster["workerGroupSpecs"])]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_lifetime_passes_kuberays_own_deletion_checks(variant):
    assert kuberay_deletion_errors(render(VARIANTS[variant])["spec"]) == []


def test_gpu_workers_get_eight_cpus_and_32gi_per_gpu_by_default():
    limits = gpu_pod(render(Settings(gpus=4)))["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    changed = gpu_pod(render(Settings(gpus=4, gpu_worker_cpu="12", gpu_worker_memory="48Gi")))
    assert changed["containers"][0]["resources"]["requests"]["cpu"] == "12"
    cpu_only = gpu_pod(render(Settings()))["containers"][0]["resources"]["limits"]
    assert cpu_only == {"cpu": Settings().worker_cpu, "memory": Settings().worker_memory}


def test_every_container_runs_restricted_without_a_uid(validator):
    manifest = render(VARIANTS["gpus-placed"])
    validator.validate(manifest)
    for pod in all_pods(manifest):
        assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert context["runAsNonRoot"] is True
            assert "runAsUser" not in context and "runAsGroup" not in context
    assert "runAsUser" not in to_yaml(manifest)


def test_gpu_workers_tolerate_the_gpu_taint_and_the_head_does_not_need_to(validator):
    manifest = render(Settings(gpus=4))
    validator.validate(manifest)
    assert gpu_pod(manifest)["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "tolerations" not in manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert "tolerations" not in gpu_pod(render(Settings(gpus=4, gpu_toleration=False)))
    assert "tolerations" not in gpu_pod(render(Settings(cpu_workers=2)))


def test_given_tolerations_go_to_every_pod(validator):
    manifest = render(VARIANTS["gpus-placed"])
    validator.validate(manifest)
    given = [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute"},
    ]
    head, workers = all_pods(manifest)
    assert head["tolerations"] == given
    assert workers["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, *given]


def test_node_selector_goes_to_every_pod(validator):
    manifest = render(VARIANTS["gpus-placed"])
    validator.validate(manifest)
    for pod in all_pods(manifest):
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "topology.kubernetes.io/zone": "zone-a"}


def test_pull_secrets_service_account_and_priority_class(validator):
    manifest = render(VARIANTS["gpus-placed"])
    validator.validate(manifest)
    for pod in all_pods(manifest):
        assert pod["imagePullSecrets"] == [{"name": "registry-pull"}, {"name": "mirror-pull"}]
        assert pod["serviceAccountName"] == "raybake-runner"
        assert pod["priorityClassName"] == "batch-low"
    for pod in all_pods(render(Settings(gpus=1))):
        assert not {"nodeSelector", "imagePullSecrets", "serviceAccountName", "priorityClassName"} & set(pod)


@pytest.mark.parametrize(
    ("settings", "source"),
    [
        (Settings(gpus=1), {"emptyDir": {}}),
        (Settings(hf_cache_pvc="hf"), {"persistentVolumeClaim": {"claimName": "hf"}}),
    ],
)
def test_hf_home_is_a_volume_and_the_env_points_there(validator, settings, source):
    manifest = render(settings)
    validator.validate(manifest)
    for pod in all_pods(manifest):
        assert {"name": "hf-cache", **source} in pod["volumes"]
        container = pod["containers"][0]
        assert {"name": "hf-cache", "mountPath": "/home/ray/.cache/huggingface"} in container["volumeMounts"]
        assert {"name": "HF_HOME", "value": "/home/ray/.cache/huggingface"} in container["env"]


def test_hf_home_is_the_images():
    """The volume goes where docker/Dockerfile points HF_HOME, not somewhere the job never reads."""
    assert "HF_HOME=/home/ray/.cache/huggingface" in (ROOT / "docker" / "Dockerfile").read_text()


def test_a_pvc_and_the_hf_cache_share_the_pod(validator):
    manifest = render(Settings(pvc="data-claim", hf_cache_pvc="hf"))
    validator.validate(manifest)
    names = [v["name"] for v in all_pods(manifest)[0]["volumes"]]
    assert names == ["data", "hf-cache"]


def test_workers_go_when_the_job_ends_and_the_head_after_the_ttl(validator):
    manifest = render(Settings(gpus=4, ttl_after_finished_s=300))
    validator.validate(manifest)
    job = manifest["spec"]
    assert job["shutdownAfterJobFinishes"] is False
    assert "ttlSecondsAfterFinished" not in job
    rules = job["deletionStrategy"]["deletionRules"]
    for condition in ({"jobStatus": "SUCCEEDED"}, {"jobStatus": "FAILED"}, {"jobDeploymentStatus": "Failed"}):
        assert {"condition": {**condition, "ttlSeconds": 0}, "policy": "DeleteWorkers"} in rules
        assert {"condition": {**condition, "ttlSeconds": 300}, "policy": "DeleteCluster"} in rules
    assert not [r for r in rules if r["policy"] == "DeleteSelf"]
    note = manifests.lifetime_note(manifest)
    assert "workers deleted at once" in note and "head after 300s" in note


def test_keeping_the_cluster_is_the_ttl_alone(validator):
    manifest = render(VARIANTS["keep-cluster"])
    validator.validate(manifest)
    job = manifest["spec"]
    assert (job["shutdownAfterJobFinishes"], job["ttlSecondsAfterFinished"]) == (True, 600)
    assert "deletionStrategy" not in job
    assert "stays 600s" in manifests.lifetime_note(manifest)


def test_the_operator_submits_so_no_submitter_container_or_pod_pulls_the_image_again(validator):
    manifest = render(Settings(gpus=4))
    validator.validate(manifest)
    job = manifest["spec"]
    assert job["submissionMode"] == "HTTPMode"
    # No submitter of any kind: nothing for KubeRay to build a container or pod from.
    assert "submitterPodTemplate" not in job and "submitterConfig" not in job
    head = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert [c["name"] for c in head["containers"]] == ["ray-head"]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("node_selector", "no-equals-sign", "not key=value"),
        ("node_selector", "bad key=1", "not key=value"),
        ("tolerations", "gpu", "not key\\[=value\\]:Effect"),
        ("tolerations", "gpu:Sometimes", "NoSchedule, PreferNoSchedule, NoExecute"),
    ],
)
def test_malformed_placement_is_refused_naming_it(field, value, match):
    with pytest.raises(RaybakeError, match=match):
        render(dataclasses.replace(Settings(gpus=1), **{field: value}))


def test_the_dry_run_of_submit_gpus_4_shows_all_of_it_and_validates(validator, tmp_path):
    """What `invoke submit --backend rayjob --gpus 4 ... --dry-run` prints: strict-valid, and each rule."""
    argv = [
        *(sys.executable, "-m", "invoke", "submit", "--backend", "rayjob", "--gpus", "4"),
        *("--corpus", "s3://bucket/corpus", "--output", "s3://bucket/out", "--image", IMAGE),
        *("--node-selector", "pool=gpu", "--image-pull-secrets", "regcred", "--dry-run"),
    ]
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    first, _, document = done.stdout.partition("\n")
    assert first.startswith("# after the job: workers deleted at once")
    manifest, secret, options = yaml.safe_load_all(document)
    validator.validate(manifest)
    assert secret["kind"] == "Secret" and secret["stringData"] == {"auth_token": "<redacted>"}
    assert options["kind"] == "Secret" and options["stringData"] == {"spec": "<redacted>"}
    job = manifest["spec"]
    assert job["submissionMode"] == "HTTPMode"
    assert job["rayClusterSpec"]["authOptions"] == {"mode": "token", "secretName": secret["metadata"]["name"]}
    assert {"condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}, "policy": "DeleteWorkers"} in job[
        "deletionStrategy"
    ]["deletionRules"]
    workers = gpu_pod(manifest)
    assert workers["containers"][0]["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert workers["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in workers["tolerations"]
    for pod in all_pods(manifest):
        assert pod["nodeSelector"] == {"pool": "gpu"} and pod["imagePullSecrets"] == [{"name": "regcred"}]
