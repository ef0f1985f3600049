"""KubeRay's API as raybake names it: the group, version and resources, the labels, the head's service.

The one home of these names; the manifests, the API client, the status reader and the
post-mortem dump all take them from here. They follow the pinned operator (versions.KUBERAY).
"""

from __future__ import annotations

GROUP = "ray.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
RAYJOBS = "rayjobs"
RAYCLUSTERS = "rayclusters"
# The resource (plural) of each kind raybake makes.
PLURALS = {"RayJob": RAYJOBS, "RayCluster": RAYCLUSTERS}

# What raybake puts on the RayJobs it makes, so that `invoke jobs` lists only those.
MANAGED_BY = ("app.kubernetes.io/managed-by", "raybake")
MANAGED_SELECTOR = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"

# What KubeRay and the Job controller put on the pods they make.
CLUSTER_LABEL = "ray.io/cluster"
NODE_TYPE_LABEL = "ray.io/node-type"  # head | worker
SUBMITTER_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def cluster_selector(cluster: str) -> str:
    """The pods of one RayCluster."""
    return f"{CLUSTER_LABEL}={cluster}"


def head_service(cluster: str) -> str:
    """The Service KubeRay puts in front of a cluster's head."""
    return f"{cluster}-head-svc"
