"""What each pod of a RayJob gets beyond its container's image and command.

Where it may run (nodeSelector, tolerations, priority class), as whom (service account, and a
securityContext that OpenShift's restricted-v2 SCC and the Kubernetes "restricted" Pod Security
Standard admit), what it pulls with (image pull secrets) and where the Hugging Face cache lives.
Kept apart from raybake.kube.manifests so the RayJob's shape stays readable top to bottom there.
"""

from __future__ import annotations

import re
from typing import Any

from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError

GPU_RESOURCE = "nvidia.com/gpu"
# The taint the NVIDIA GPU operator and most clouds put on GPU nodes.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# The image's HF_HOME (docker/Dockerfile); the volume is mounted there.
HF_HOME = "/home/ray/.cache/huggingface"
HF_CACHE_VOLUME = "hf-cache"
# A qualified name (optional DNS prefix) as keys of labels and taints are.
KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def node_selector(value: str) -> dict[str, str]:
    """ "key=value,key=value" (as `kubectl get -l` writes them) as a nodeSelector."""
    selector = {}
    for item in _items(value):
        key, sep, val = item.partition("=")
        if not sep or not KEY.match(key):
            raise RaybakeError(f"node selector {item!r} is not key=value", ExitCode.REFUSED)
        selector[key] = val
    return selector


def tolerations(value: str, *, gpu: bool, gpu_preset: bool) -> list[dict[str, str]]:
    """ "key[=value]:Effect,..." (as `kubectl taint` writes taints), plus the GPU taint's preset."""
    found = [dict(GPU_TOLERATION)] if gpu and gpu_preset else []
    for item in _items(value):
        taint, sep, effect = item.rpartition(":")
        key, has_value, val = taint.partition("=")
        if not sep or effect not in EFFECTS or not KEY.match(key):
            raise RaybakeError(
                f"toleration {item!r} is not key[=value]:Effect (Effect: {', '.join(EFFECTS)})", ExitCode.REFUSED
            )
        entry = {"key": key, "operator": "Equal", "value": val} if has_value else {"key": key, "operator": "Exists"}
        entry["effect"] = effect
        if entry not in found:
            found.append(entry)
    return found


def container_security() -> dict[str, Any]:
    """The restricted profile, and no runAsUser: OpenShift picks the UID (the image allows any)."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def hf_cache(settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """The cache volume (the claim, else an emptyDir that lives as long as the pod) and its mount.

    A model that is not baked into the image is downloaded there; a claim keeps it for the next
    job. A baked model lives in the image's site-packages, which this mount does not hide.
    """
    source = (
        {"persistentVolumeClaim": {"claimName": settings.hf_cache_pvc}} if settings.hf_cache_pvc else {"emptyDir": {}}
    )
    return {"name": HF_CACHE_VOLUME, **source}, {"name": HF_CACHE_VOLUME, "mountPath": HF_HOME}


def apply(pod: dict[str, Any], *, settings: Settings, gpu: bool) -> dict[str, Any]:
    """Add placement, identity, pull secrets, securityContext and the HF cache to a pod spec."""
    volume, mount = hf_cache(settings)
    pod.setdefault("volumes", []).append(volume)
    for container in pod["containers"]:
        container.setdefault("volumeMounts", []).append(dict(mount))
        container.setdefault("env", []).append({"name": "HF_HOME", "value": HF_HOME})
        container["securityContext"] = container_security()
    pod["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if selector := node_selector(settings.node_selector):
        pod["nodeSelector"] = selector
    if tolerated := tolerations(settings.tolerations, gpu=gpu, gpu_preset=settings.gpu_toleration):
        pod["tolerations"] = tolerated
    if secrets := _items(settings.image_pull_secrets):
        pod["imagePullSecrets"] = [{"name": name} for name in secrets]
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    if settings.priority_class:
        pod["priorityClassName"] = settings.priority_class
    return pod
