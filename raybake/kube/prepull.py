"""`invoke prepull`: pull the job image onto the GPU nodes before a job needs it.

A CUDA image is several GB compressed; on a fresh node its pull dominates a job's start, and a
RayJob's workers each wait for it. A DaemonSet whose pods run the image pulls it on every node
it selects, ahead of time (Ray's guide "Reducing image pull latency" recommends this). Its
container only sleeps: the image is what matters. The pods run under the same restricted
securityContext as the job's, take almost nothing, and tolerate the GPU taint.

While the DaemonSet exists, the kubelet's image garbage collection keeps the image (it is in
use), and a node that joins later pulls it too. `kubectl delete daemonset <name>` ends that.
"""

from __future__ import annotations

import hashlib
from typing import Any

from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.kube import pods
from raybake.kube.kuberay import MANAGED_BY

NAME_PREFIX = "raybake-prepull"
# A process that does nothing until it is stopped, in any image with a POSIX shell and sleep.
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 3600 & wait $!; done"]


def name_for(image: str) -> str:
    """One DaemonSet per image: a second prepull of the same image updates it, another adds one."""
    return f"{NAME_PREFIX}-{hashlib.sha256(image.encode()).hexdigest()[:10]}"


def daemonset(image: str, *, settings: Settings, nodes: str = "") -> dict[str, Any]:
    """The DaemonSet (apps/v1) that holds `image` on the nodes `nodes` selects (key=value,...).

    Without `nodes`, the node selector of the job's settings; the GPU taint is tolerated
    either way, as GPU nodes usually carry it.
    """
    if not image:
        raise RaybakeError("prepull needs an image: --image, or `invoke push` first", ExitCode.REFUSED)
    name = name_for(image)
    labels = {
        "app.kubernetes.io/name": NAME_PREFIX,
        MANAGED_BY[0]: MANAGED_BY[1],
        "raybake.io/prepull": name,
    }
    selector = pods.node_selector(nodes or settings.node_selector)
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "image",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": IDLE,
                "resources": {
                    "requests": {"cpu": "1m", "memory": "8Mi"},
                    "limits": {"cpu": "10m", "memory": "32Mi"},
                },
                "securityContext": pods.container_security(),
            }
        ],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "tolerations": pods.tolerations(settings.tolerations, gpu=True, gpu_preset=True),
        "terminationGracePeriodSeconds": 5,
        "automountServiceAccountToken": False,
    }
    if selector:
        spec["nodeSelector"] = selector
    if secrets := [s.strip() for s in settings.image_pull_secrets.split(",") if s.strip()]:
        spec["imagePullSecrets"] = [{"name": secret} for secret in secrets]
    if settings.priority_class:
        spec["priorityClassName"] = settings.priority_class
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"raybake.io/image": image},
        },
        "spec": {
            "selector": {"matchLabels": {"raybake.io/prepull": name}},
            # All nodes at once: the point is to pull everywhere before the job.
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def apply(manifest: dict[str, Any], *, settings: Settings) -> str:
    """Create the DaemonSet, or replace the one a previous prepull of this image made; its namespace."""
    from raybake.kube.client import Kube

    kube = Kube(settings)
    kube.apply_daemonset(manifest)
    return kube.namespace
