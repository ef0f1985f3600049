"""A team's long-lived RayCluster of the image, as plain data: what `invoke cluster up` applies.

The pods are the RayJob's (raybake.kube.manifests builds both): the same head, the same
worker pods, token auth, the restricted securityContext, placement and the object store. What
differs is time: a RayJob's cluster lives as long as its job, this one as long as the team
wants it, so its GPU workers come and go with the work. KubeRay's autoscaler (v2) adds a GPU
worker when a job asks Ray for a GPU none has free, and removes one idle_timeout_s after it
last ran anything; between jobs the cluster holds only its head (min_gpus of 0).
"""

from __future__ import annotations

from typing import Any

from raybake.config import Settings
from raybake.kube import manifests, pods
from raybake.kube.kuberay import API_VERSION, MANAGED_BY

KIND = "RayCluster"
# The label and annotations that mark a RayCluster as one raybake made, and with what.
CLUSTER_LABEL = "raybake.io/cluster"
IMAGE_ANNOTATION = "raybake.io/image"
GPU_GROUP = "gpu"
CPU_GROUP = "cpu"
# The autoscaler runs as a container KubeRay adds to the head pod: small, and as restricted.
AUTOSCALER_RESOURCES = manifests.resources(cpu="500m", memory="512Mi")


def raycluster(name: str, *, image: str, ray_version: str, settings: Settings) -> dict[str, Any]:
    """The RayCluster `name`: a head, a GPU group that autoscales from min_gpus to max_gpus, and
    a CPU group when max_cpu_workers asks for one."""
    manifests.check_name(name)
    env = manifests.image_env(image)
    groups = []
    if settings.max_gpus:
        replicas = (settings.min_gpus, settings.min_gpus, settings.max_gpus)
        groups.append(manifests.group(image=image, settings=settings, env=env, job=name, gpu=True, replicas=replicas))
    if settings.max_cpu_workers:
        replicas = (0, 0, settings.max_cpu_workers)
        groups.append(manifests.group(image=image, settings=settings, env=env, job=name, gpu=False, replicas=replicas))
    spec: dict[str, Any] = {
        "rayVersion": ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "version": "v2",
            "upscalingMode": "Default",
            "idleTimeoutSeconds": settings.idle_timeout_s,
            "resources": AUTOSCALER_RESOURCES,
            "securityContext": pods.container_security(),
        },
        # A new image or setting reaches running pods only if KubeRay recreates them; with
        # "None" the old pods would keep the old image until each happened to be replaced.
        "upgradeStrategy": {"type": "Recreate"},
        "authOptions": manifests.token_auth(name),
        "headGroupSpec": manifests.head_group(image=image, settings=settings, env=env, job=name),
        "workerGroupSpecs": groups,
    }
    manifests.with_object_store(spec, settings=settings)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "raybake", MANAGED_BY[0]: MANAGED_BY[1], CLUSTER_LABEL: name},
            "annotations": {IMAGE_ANNOTATION: image},
        },
        "spec": spec,
    }


def is_raybakes(cluster: dict[str, Any]) -> bool:
    return (cluster.get("metadata", {}).get("labels") or {}).get(MANAGED_BY[0]) == MANAGED_BY[1]


def image_of(cluster: dict[str, Any]) -> str:
    """The image the cluster's pods are declared with: its head's main container."""
    return str(cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"])


def gpu_group(cluster: dict[str, Any]) -> dict[str, Any] | None:
    return next((g for g in cluster["spec"].get("workerGroupSpecs", []) if g.get("groupName") == GPU_GROUP), None)


def worker_cpus(group: dict[str, Any]) -> str:
    """The CPUs a group's pod has, which Ray offers on it (a GPU worker asks for all of them)."""
    return str(group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
