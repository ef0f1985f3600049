"""The pods the pinned KubeRay (1.7) makes from a RayJob: raybake's templates plus what the operator adds.

Read from ray-operator at the pinned tag (raybake.versions.KUBERAY), so that the Pod Security
tests judge what the API server will be asked to admit, not only what raybake renders:
- every Ray container: the token's env (common/pod.go SetContainerTokenAuthEnvVars: RAY_AUTH_MODE,
  RAY_AUTH_TOKEN from the authOptions Secret) and /dev/shm as a Memory emptyDir (BuildPod,
  addEmptyDir);
- every worker pod: the `wait-gcs-ready` init container, whose securityContext is a copy of the
  Ray container's (DefaultWorkerPodTemplate);
- SidecarMode: a `ray-job-submitter` container in the head pod (common/job.go
  GetDefaultSubmitterContainer: image and resources only, no securityContext, and
  rayjob_controller.go getSubmitterContainer sets none), the head's restartPolicy Never;
- K8sJobMode: a submitter pod from `submitterPodTemplate`, else the same default container;
- HTTPMode and InteractiveMode: nothing; the operator (or raybake) submits over HTTP;
- an autoscaling RayCluster (`invoke cluster`): the autoscaler container in the head pod.
"""

from __future__ import annotations

import copy
from typing import Any

SUBMITTER = "ray-job-submitter"


def _ray_container(container: dict[str, Any], secret: str) -> None:
    container.setdefault("env", []).extend(
        [
            {"name": "RAY_AUTH_MODE", "value": "token"},
            {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "auth_token"}}},
        ]
    )
    container.setdefault("volumeMounts", []).append({"name": "shared-mem", "mountPath": "/dev/shm"})


def _submitter(image: str, secret: str) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": SUBMITTER,
        "image": image,
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "200Mi"}},
        "command": ["/bin/bash", "-ce", "--"],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
    }
    _ray_container(container, secret)
    container["volumeMounts"].pop()  # no /dev/shm for the submitter
    return container


def _built(template: dict[str, Any], secret: str) -> dict[str, Any]:
    spec = copy.deepcopy(template["spec"])
    _ray_container(spec["containers"][0], secret)
    memory = spec["containers"][0].get("resources", {}).get("limits", {}).get("memory")
    spec.setdefault("volumes", []).append({"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": memory}})
    return spec


def _autoscaler(image: str, options: dict[str, Any]) -> dict[str, Any]:
    """The autoscaler KubeRay adds to an autoscaling cluster's head (common/pod.go
    BuildAutoscalerContainer): the head's image, and autoscalerOptions' resources and securityContext."""
    container: dict[str, Any] = {
        "name": "autoscaler",
        "image": options.get("image", image),
        "command": ["/bin/bash", "-lc", "--"],
        "resources": copy.deepcopy(options.get("resources") or {"limits": {"cpu": "500m", "memory": "512Mi"}}),
    }
    if "securityContext" in options:
        container["securityContext"] = copy.deepcopy(options["securityContext"])
    return container


def pods(made: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each kind of pod KubeRay creates for a RayJob or a RayCluster, by role: its spec as the API
    server gets it."""
    job = made["spec"] if made.get("kind", "RayJob") == "RayJob" else {"submissionMode": "none"}
    cluster = job.get("rayClusterSpec") or made["spec"]
    secret = cluster["authOptions"]["secretName"]
    mode = job.get("submissionMode", "K8sJobMode")
    head_template = cluster["headGroupSpec"]["template"]
    image = head_template["spec"]["containers"][0]["image"]

    head = _built(head_template, secret)
    if cluster.get("enableInTreeAutoscaling"):
        head["containers"].append(_autoscaler(image, cluster.get("autoscalerOptions") or {}))
    if mode == "SidecarMode":
        head["containers"].append(_submitter(image, secret))
        head["restartPolicy"] = "Never"
    found = {"head": head}
    for group in cluster["workerGroupSpecs"]:
        worker = _built(group["template"], secret)
        ray = worker["containers"][0]
        wait = {
            "name": "wait-gcs-ready",
            "image": ray["image"],
            "command": ["/bin/bash", "-lc", "--"],
            "securityContext": copy.deepcopy(ray.get("securityContext")),
            "env": copy.deepcopy(ray.get("env", [])),
            "volumeMounts": copy.deepcopy(ray.get("volumeMounts", [])),
            "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}, "requests": {"cpu": "200m", "memory": "256Mi"}},
        }
        if wait["securityContext"] is None:
            del wait["securityContext"]
        worker.setdefault("initContainers", []).append(wait)
        found[f"worker {group['groupName']}"] = worker
    if mode == "K8sJobMode":
        template = job.get("submitterPodTemplate") or {"spec": {"containers": [_submitter(image, secret)]}}
        found["submitter"] = {"restartPolicy": "Never", **copy.deepcopy(template["spec"])}
    return found
