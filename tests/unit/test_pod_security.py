"""Every pod raybake makes, with what KubeRay adds to it, passes the Pod Security "restricted" profile.

The checker (tests/podsecurity.py) is first shown to refuse what the standard refuses, then it
judges the pods the pinned KubeRay would create from each rendered RayJob (tests/kuberay_pods.py)
and the prepull DaemonSet's pod. SidecarMode, which raybake rendered before, is refused there:
the reason raybake renders HTTPMode.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
from kuberay_pods import SUBMITTER, pods
from podsecurity import violations

from raybake.config import Settings
from raybake.kube import prepull
from raybake.kube.manifests import Origin, rayjob
from raybake.spec import JobSpec
from raybake.versions import ray_version

SPEC = JobSpec(corpus="s3://bucket/corpus", output="s3://bucket/out/j1", name="raybake-embed-20261125-120000")
ORIGIN = Origin(git_sha="0" * 40, user="ada")
IMAGE = "registry.example/raybake@sha256:" + "a" * 64
# A pod as the restricted profile wants it at least: what each refused case below spoils once.
GOOD = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {
            "name": "main",
            "image": IMAGE,
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }
    ],
    "volumes": [{"name": "v", "emptyDir": {}}, {"name": "c", "persistentVolumeClaim": {"claimName": "c"}}],
}
VARIANTS = {
    "cpu": Settings(),
    "gpus": Settings(gpus=2, pvc="corpus", hf_cache_pvc="hf", service_account="runner", image_pull_secrets="pull"),
    "object-store": Settings(
        cpu_workers=2,
        logical_gpus=1,
        env_from_secret=("s3-creds",),
        s3_endpoint="https://s3.example",
        s3_ca_bundle="configmap:s3-ca/ca.crt",
    ),
}


def spoiled(path: str, value) -> dict:
    pod = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = pod
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
    target[last] = value
    return pod


def render(settings: Settings, **kw) -> dict:
    return rayjob(
        SPEC,
        image=IMAGE,
        ray_version=ray_version(),
        settings=settings,
        origin=ORIGIN,
        runtime_env={"env_vars": {"RAYBAKE_GIT_SHA": ORIGIN.git_sha}},
        **kw,
    )


def test_the_checker_admits_the_minimal_restricted_pod_and_net_bind_service():
    assert violations(GOOD) == []
    assert violations(spoiled("containers.0.securityContext.capabilities.add", ["NET_BIND_SERVICE"])) == []
    # runAsNonRoot and seccomp may sit on every container instead of the pod.
    per_container = copy.deepcopy(GOOD)
    per_container["securityContext"] = {}
    per_container["containers"][0]["securityContext"].update(
        {"runAsNonRoot": True, "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}
    )
    assert violations(per_container) == []


@pytest.mark.parametrize(
    ("path", "value", "refusal"),
    [
        ("hostNetwork", True, "host namespaces"),
        ("hostPID", True, "host namespaces"),
        ("hostIPC", True, "host namespaces"),
        ("volumes", [{"name": "h", "hostPath": {"path": "/"}}], "restricted volume types"),
        ("volumes", [{"name": "n", "nfs": {"server": "x", "path": "/"}}], "restricted volume types"),
        ("containers.0.securityContext.privileged", True, "privileged"),
        ("containers.0.ports", [{"containerPort": 80, "hostPort": 80}], "hostPort"),
        ("containers.0.securityContext.allowPrivilegeEscalation", True, "allowPrivilegeEscalation != false"),
        ("containers.0.securityContext", {"capabilities": {"drop": ["ALL"]}}, "allowPrivilegeEscalation != false"),
        ("containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]}, "unrestricted capabilities"),
        ("containers.0.securityContext.capabilities.add", ["SYS_ADMIN"], "unrestricted capabilities"),
        ("containers.0.securityContext.capabilities.add", ["CHOWN"], "unrestricted capabilities"),
        ("securityContext.runAsNonRoot", False, "runAsNonRoot != true"),
        ("containers.0.securityContext.runAsNonRoot", False, "runAsNonRoot != true"),
        ("containers.0.securityContext.runAsUser", 0, "runAsUser=0"),
        ("securityContext.runAsUser", 0, "runAsUser=0"),
        ("securityContext.seccompProfile", {"type": "Unconfined"}, "seccompProfile"),
        ("securityContext", {"runAsNonRoot": True}, "seccompProfile"),
        ("containers.0.securityContext.seccompProfile", {"type": "Unconfined"}, "seccompProfile"),
        ("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}], "forbidden sysctls"),
        ("containers.0.securityContext.procMount", "Unmasked", "procMount"),
        ("containers.0.securityContext.seLinuxOptions", {"type": "spc_t"}, "seLinuxOptions"),
        ("containers.0.securityContext.appArmorProfile", {"type": "Unconfined"}, "AppArmor"),
        ("containers.0.securityContext.windowsOptions", {"hostProcess": True}, "hostProcess"),
        ("initContainers", [{"name": "init", "image": IMAGE}], "allowPrivilegeEscalation != false"),
        ("ephemeralContainers", [{"name": "debug", "image": IMAGE}], "unrestricted capabilities"),
    ],
)
def test_the_checker_refuses_what_the_restricted_profile_refuses(path, value, refusal):
    found = violations(spoiled(path, value))
    assert any(refusal in v for v in found), found


def test_the_checker_reads_apparmor_annotations():
    key = "container.apparmor.security.beta.kubernetes.io/main"
    assert violations(GOOD, {key: "runtime/default"}) == []
    assert violations(GOOD, {key: "unconfined"})


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_pod_kuberay_makes_from_raybakes_rayjob_is_restricted(variant):
    made = pods(render(VARIANTS[variant]))
    assert set(made) >= {"head", "worker cpu"} or set(made) >= {"head", "worker gpu"}
    # HTTPMode: the head pod holds the Ray container alone, and no submitter pod exists.
    assert [c["name"] for c in made["head"]["containers"]] == ["ray-head"] and "submitter" not in made
    for role, pod in made.items():
        assert violations(pod) == [], role


def test_an_uploaded_corpus_rayjob_interactive_mode_is_restricted_too():
    for role, pod in pods(render(VARIANTS["cpu"], interactive=True)).items():
        assert violations(pod) == [], role


def test_sidecar_mode_would_be_refused_for_its_submitter_container():
    """What raybake rendered before: KubeRay's sidecar gets no securityContext, so the head pod fails."""
    manifest = render(VARIANTS["cpu"])
    manifest["spec"]["submissionMode"] = "SidecarMode"
    found = violations(pods(manifest)["head"])
    assert found and all(f"container {SUBMITTER!r}" in v for v in found), found
    # The pod-level runAsNonRoot and seccomp cover it; the two container-only fields cannot.
    assert {v.split(" (")[0] for v in found} == {"allowPrivilegeEscalation != false", "unrestricted capabilities"}


def test_k8s_job_mode_without_a_secured_submitter_template_would_be_refused():
    manifest = render(VARIANTS["cpu"])
    manifest["spec"]["submissionMode"] = "K8sJobMode"
    assert violations(pods(manifest)["submitter"])


def test_the_prepull_daemonsets_pod_is_restricted():
    for settings in (Settings(), dataclasses.replace(VARIANTS["gpus"], node_selector="pool=gpu")):
        template = prepull.daemonset(IMAGE, settings=settings)["spec"]["template"]
        assert violations(template["spec"], template["metadata"].get("annotations")) == []


@pytest.mark.parametrize("max_cpu_workers", [0, 2])
def test_every_pod_of_a_team_cluster_with_its_autoscaler_is_restricted(max_cpu_workers):
    from raybake.kube.raycluster import raycluster
    from raybake.versions import ray_version

    settings = Settings(image=IMAGE, max_gpus=4, max_cpu_workers=max_cpu_workers)
    made = pods(raycluster("team-a", image=IMAGE, ray_version=ray_version(), settings=settings))
    assert [c["name"] for c in made["head"]["containers"]] == ["ray-head", "autoscaler"]
    for role, pod in made.items():
        assert violations(pod) == [], role
