"""`invoke cluster`: a team's autoscaling RayCluster against the pinned KubeRay's strict CRD, its
life on a stand-in API (tests/fakekube.py), and a RayJob queued in Kueue."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import jsonschema
import pytest
import yaml
from crd import crd_schema
from fakekube import FakeKube

from raybake.clusters import team
from raybake.clusters.rayjob import RayJobBackend
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.kube import kueue, manifests, raycluster
from raybake.kube.manifests import Origin
from raybake.spec import JobSpec
from raybake.versions import ROOT, ray_version

IMAGE = "registry.example/raybake@sha256:" + "b" * 64
NEWER = "registry.example/raybake@sha256:" + "c" * 64
SETTINGS = Settings(image=IMAGE, max_gpus=8)
VARIANTS = {
    "gpus": SETTINGS,
    "gpus-and-cpus": dataclasses.replace(SETTINGS, min_gpus=1, max_cpu_workers=3, idle_timeout_s=120),
    "cpus-only": dataclasses.replace(SETTINGS, max_gpus=0, max_cpu_workers=2),
    "placed": dataclasses.replace(
        SETTINGS,
        node_selector="nvidia.com/gpu.present=true",
        tolerations="dedicated=ml:NoSchedule",
        image_pull_secrets="registry-pull",
        service_account="raybake-runner",
        priority_class="team-a",
        hf_cache_pvc="hf-cache",
        env_from_secret=("s3-credentials",),
        s3_endpoint="https://s3.openshift-storage.svc",
        s3_ca_bundle="configmap:s3-ca/ca.crt",
    ),
}


def invoke_stdout(home, *args: str) -> str:
    """What `invoke ARGS` prints, run as a user would with an empty HOME and state of its own."""
    env = {**os.environ, "HOME": str(home), "INVOKE_RAYBAKE_STATE_FILE": str(home / "state.json")}
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(crd_schema("rayclusters"))


def containers(cluster: dict) -> list[dict]:
    spec = cluster["spec"]
    templates = [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]
    return [c for t in templates for c in t["spec"]["containers"]]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_team_cluster_passes_the_strict_raycluster_crd(variant, validator):
    rendered = raycluster.raycluster("team-a", image=IMAGE, ray_version=ray_version(), settings=VARIANTS[variant])
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(rendered)]
    assert not errors, errors


def test_the_gpu_group_autoscales_from_zero_under_the_restricted_profile_with_token_auth():
    rendered = raycluster.raycluster("team-a", image=IMAGE, ray_version=ray_version(), settings=SETTINGS)
    spec = rendered["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] == SETTINGS.idle_timeout_s
    [gpu] = spec["workerGroupSpecs"]
    assert (gpu["groupName"], gpu["replicas"], gpu["minReplicas"], gpu["maxReplicas"]) == ("gpu", 0, 0, 8)
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["authOptions"] == {"mode": "token", "secretName": "team-a-ray-token"}
    assert spec["upgradeStrategy"] == {"type": "Recreate"}
    assert {c["image"] for c in containers(rendered)} == {IMAGE}
    # The autoscaler is a container KubeRay adds to the head from autoscalerOptions: restricted too.
    for context in [
        *(c["securityContext"] for c in containers(rendered)),
        spec["autoscalerOptions"]["securityContext"],
    ]:
        assert context["allowPrivilegeEscalation"] is False and context["runAsNonRoot"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_team_clusters_pods_are_the_rayjobs_pods():
    """One builder for both kinds of cluster: the same head and GPU worker pod, not a copy."""
    settings = dataclasses.replace(VARIANTS["placed"], gpus=8)
    spec = JobSpec(corpus="s3://b/c", output="s3://b/o", name="raybake-embed-1")
    job = manifests.rayjob(spec, image=IMAGE, ray_version=ray_version(), settings=settings, origin=Origin("0" * 40))
    cluster = raycluster.raycluster("raybake-embed-1", image=IMAGE, ray_version=ray_version(), settings=settings)
    job_cluster = job["spec"]["rayClusterSpec"]
    # The RayJob's head also reads its job's options from their Secret; a team cluster has no job.
    job_head = job_cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    job_head["env"].remove(manifests.spec_env("raybake-embed-1"))
    assert cluster["spec"]["headGroupSpec"] == job_cluster["headGroupSpec"]
    assert cluster["spec"]["workerGroupSpecs"][0]["template"] == job_cluster["workerGroupSpecs"][0]["template"]


@pytest.mark.parametrize("changes", [{"min_gpus": 3, "max_gpus": 2}, {"max_gpus": 0}], ids=str)
def test_a_cluster_that_could_never_run_a_worker_is_refused(changes):
    with pytest.raises(RaybakeError, match="min_gpus"):
        raycluster.raycluster(
            "team-a", image=IMAGE, ray_version=ray_version(), settings=Settings(image=IMAGE, **changes)
        )


def test_cluster_up_dry_run_prints_the_cluster_and_its_secret_redacted(tmp_path):
    out = invoke_stdout(
        tmp_path,
        "cluster",
        "up",
        "--dry-run",
        "--max-gpus",
        "8",
        "--name",
        "team-a",
        "--image",
        IMAGE,
    )
    cluster, secret = yaml.safe_load_all(out)
    assert cluster["kind"] == "RayCluster" and cluster["metadata"]["name"] == "team-a"
    jsonschema.validate(cluster, crd_schema("rayclusters"))
    assert cluster["spec"]["workerGroupSpecs"][0]["maxReplicas"] == 8
    assert secret["kind"] == "Secret" and secret["stringData"] == {"auth_token": manifests.REDACTED}


def test_up_creates_the_cluster_and_its_token_secret_owned_by_it_and_a_second_up_leaves_it():
    kube = FakeKube()
    said = team.TeamCluster(SETTINGS, "team-a", kube=kube).up()
    assert said.startswith("created RayCluster team-a in namespace ml") and "0 to 8 GPU workers" in said
    [secret] = kube.owned
    assert (secret["kind"], secret["metadata"]["name"], secret["owner"]) == ("Secret", "team-a-ray-token", "team-a")
    assert len(secret["stringData"]["auth_token"]) >= 32
    again = team.TeamCluster(dataclasses.replace(SETTINGS, image=NEWER), "team-a", kube=kube).up()
    assert "exists" in again and IMAGE in again and "invoke cluster upgrade" in again
    assert raycluster.image_of(kube.rayclusters["team-a"]) == IMAGE


def test_upgrade_patches_the_new_image_in_and_says_what_kuberay_does_to_the_pods():
    kube = FakeKube()  # no head pod: no job can be running
    team.TeamCluster(SETTINGS, "team-a", kube=kube).up()
    said = team.TeamCluster(dataclasses.replace(SETTINGS, image=NEWER), "team-a", kube=kube).upgrade()
    assert f"image {IMAGE} -> {NEWER}" in said and "recreates the head and every worker" in said
    assert raycluster.image_of(kube.rayclusters["team-a"]) == NEWER
    assert kube.rayclusters["team-a"]["metadata"]["annotations"][raycluster.IMAGE_ANNOTATION] == NEWER
    same = team.TeamCluster(dataclasses.replace(SETTINGS, image=NEWER), "team-a", kube=kube).upgrade()
    assert "already runs" in same and len(kube.patches) == 1


def test_upgrade_and_down_refuse_a_cluster_raybake_did_not_make():
    kube = FakeKube()
    kube.rayclusters["theirs"] = {"metadata": {"name": "theirs", "labels": {}}, "spec": {}}
    for act in (lambda t: t.upgrade(), lambda t: t.down()):
        with pytest.raises(RaybakeError, match="not made by raybake"):
            act(team.TeamCluster(SETTINGS, "theirs", kube=kube))
    assert "theirs" in kube.rayclusters


def test_down_deletes_the_cluster_and_its_secret():
    kube = FakeKube()
    team.TeamCluster(SETTINGS, "team-a", kube=kube).up()
    said = team.TeamCluster(SETTINGS, "team-a", kube=kube).down()
    assert said == "deleted RayCluster team-a and its token Secret from namespace ml"
    assert "team-a" not in kube.rayclusters and kube.deleted_secrets == ["team-a-ray-token"]
    with pytest.raises(RaybakeError, match="no RayCluster 'team-a'.*invoke cluster up"):
        team.TeamCluster(SETTINGS, "team-a", kube=kube).down()


def pod(name: str, group: str | None, phase: str, **status) -> dict:
    labels = {"ray.io/cluster": "team-a", "ray.io/node-type": "worker" if group else "head"}
    if group:
        labels["ray.io/group"] = group
    return {"metadata": {"name": name, "labels": labels}, "status": {"phase": phase, **status}}


UNSCHEDULABLE = {
    "conditions": [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available",
        }
    ]
}


def test_status_of_a_cluster_scaling_up_says_so_in_a_few_lines():
    """Recorded shapes: the RayCluster's status as KubeRay 1.7 writes it, pods as the API lists them."""
    kube = FakeKube()
    team.TeamCluster(SETTINGS, "team-a", kube=kube).up()
    kube.rayclusters["team-a"]["status"] = {
        "state": "ready",
        "desiredWorkerReplicas": 3,
        "availableWorkerReplicas": 1,
        "readyWorkerReplicas": 1,
        "desiredGPU": "3",
        "head": {"podName": "team-a-head-8xk2p", "serviceName": "team-a-head-svc"},
    }
    kube.pod_list = [
        pod("team-a-head-8xk2p", None, "Running"),
        pod("team-a-gpu-worker-a1", "gpu", "Running"),
        pod("team-a-gpu-worker-b2", "gpu", "Pending", **UNSCHEDULABLE),
        pod("team-a-gpu-worker-c3", "gpu", "Pending"),
    ]
    lines = team.TeamCluster(SETTINGS, "team-a", kube=kube).status()
    assert lines[0] == f"RayCluster team-a (namespace ml): ready, Ray {ray_version()}, image {IMAGE}"
    assert lines[1] == "head: Running (team-a-head-8xk2p)"
    assert lines[2] == "gpu workers: 1 running, 2 starting (scaling up), 0 to 8 autoscaled; GPUs: 1 ready of at most 8"
    # FakeKube has no head to forward to, as a cluster whose head is not up yet.
    assert lines[3] == "jobs: none (no running head)"
    assert lines[4].startswith("stuck: pod team-a-gpu-worker-b2 waits for GPUs: 0/3 nodes are available")
    assert len(lines) == 5


def test_a_job_on_the_team_cluster_asks_for_its_gpu_workers_unless_the_user_said_otherwise():
    cluster = raycluster.raycluster("team-a", image=IMAGE, ray_version=ray_version(), settings=SETTINGS)
    every = team.sizing(cluster, Settings())
    assert every.job_args(()) == ("--workers", "8", "--cpus-per-worker", "8", "--device", "cuda")
    assert team.sizing(cluster, Settings(gpus=2)).workers == 2
    assert every.job_args(("--workers", "1")) == ("--cpus-per-worker", "8", "--device", "cuda")
    cpus = raycluster.raycluster("team-a", image=IMAGE, ray_version=ray_version(), settings=VARIANTS["cpus-only"])
    assert team.sizing(cpus, Settings()).job_args(()) == ("--workers", "2", "--cpus-per-worker", "2")


# Kueue: a RayJob created suspended with the queue label; the Workload's shape is Kueue v1beta1's.
WORKLOAD = {
    "apiVersion": "kueue.x-k8s.io/v1beta1",
    "kind": "Workload",
    "metadata": {"name": "rayjob-raybake-embed-1-4f2a1", "ownerReferences": [{"kind": "RayJob", "uid": "u1"}]},
    "spec": {"queueName": "team-a"},
    "status": {
        "conditions": [
            {
                "type": "QuotaReserved",
                "status": "False",
                "reason": "Pending",
                "message": "couldn't assign flavors to pod set workers: insufficient unused quota for nvidia.com/gpu "
                "in flavor default-flavor, 4 more needed",
            }
        ]
    },
}


def queued_rayjob(settings: Settings) -> dict:
    spec = JobSpec(corpus="s3://b/c", output="s3://b/o", name="raybake-embed-1")
    return manifests.rayjob(spec, image=IMAGE, ray_version=ray_version(), settings=settings, origin=Origin("0" * 40))


def test_a_queued_rayjob_is_suspended_labelled_and_gives_its_cluster_back_at_the_end():
    job = queued_rayjob(Settings(gpus=4, kueue_queue="team-a"))
    assert job["metadata"]["labels"][kueue.QUEUE_LABEL] == "team-a"
    assert job["spec"]["suspend"] is True
    # Kueue (and KubeRay for a suspended RayJob) insist on it; deletionRules exclude it.
    assert job["spec"]["shutdownAfterJobFinishes"] is True and "deletionStrategy" not in job["spec"]
    jsonschema.validate(job, crd_schema("rayjobs"))
    plain = queued_rayjob(Settings(gpus=4))
    assert kueue.QUEUE_LABEL not in plain["metadata"]["labels"] and "suspend" not in plain["spec"]


def test_a_queue_is_refused_for_an_uploaded_corpus_and_for_a_name_that_is_no_label():
    spec = JobSpec(corpus="s3://b/c", output="s3://b/o", name="raybake-embed-1")
    for settings, interactive in ((Settings(kueue_queue="team-a"), True), (Settings(kueue_queue="team a;x"), False)):
        with pytest.raises(RaybakeError, match="cannot queue in"):
            manifests.rayjob(
                spec,
                image=IMAGE,
                ray_version=ray_version(),
                settings=settings,
                origin=Origin("0" * 40),
                interactive=interactive,
            )


def test_a_rayjob_kueue_holds_is_pending_with_the_workloads_reason_not_stopped():
    kube = FakeKube(statuses=[{"jobDeploymentStatus": "Suspended"}])
    job = queued_rayjob(Settings(kueue_queue="team-a"))
    job["metadata"]["uid"] = "u1"
    kube.created.append(job)
    kube.workload_list = [WORKLOAD]
    result = RayJobBackend(Settings(), kube=kube).status("raybake-embed-1")
    assert result.status == "PENDING"
    assert result.message == (
        "queued in team-a (Kueue): waiting for quota: couldn't assign flavors to pod set workers: "
        "insufficient unused quota for nvidia.com/gpu in flavor default-flavor, 4 more needed"
    )
    kube.workload_list = None  # Kueue's Workloads not readable: the queue alone
    assert RayJobBackend(Settings(), kube=kube).status("raybake-embed-1").message == "queued in team-a (Kueue)"


def test_a_queued_rayjob_that_invoke_stop_suspended_is_stopped_not_queued():
    kube = FakeKube(statuses=[{"jobDeploymentStatus": "Suspended"}])
    job = queued_rayjob(Settings(kueue_queue="team-a"))
    job["metadata"]["annotations"][kueue.STOPPED_ANNOTATION] = "true"
    kube.created.append(job)
    assert RayJobBackend(Settings(), kube=kube).status("raybake-embed-1").status == "STOPPED"


def test_an_admitted_workload_names_its_cluster_queue():
    admitted = {
        "status": {
            "admission": {"clusterQueue": "gpu-cq"},
            "conditions": [{"type": "QuotaReserved", "status": "True"}, {"type": "Admitted", "status": "True"}],
        }
    }
    assert kueue.admission(admitted) == "admitted by ClusterQueue gpu-cq"


def test_rayjob_dry_run_with_a_queue_renders_it_suspended_with_the_label(tmp_path):
    out = invoke_stdout(
        tmp_path,
        "submit",
        "--backend",
        "rayjob",
        "--queue",
        "team-a",
        "--dry-run",
        "--corpus",
        "s3://bucket/corpus",
        "--output",
        "s3://bucket/out",
        "--image",
        IMAGE,
    )
    job = next(d for d in yaml.safe_load_all(out) if d and d.get("kind") == "RayJob")
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"][kueue.QUEUE_LABEL] == "team-a"
