"""What a RayJob's status means, and why it is stuck, read from plain status and pod dicts.

Pure functions over the JSON the Kubernetes API returns (camelCase, as `kubectl get -o json`
prints it), so the tests feed them real shapes and the backend only fetches. A wait that no
longer makes progress is told as one line with the reason, never a silent spinner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raybake.kube.kuberay import GROUP, VERSION
from raybake.result import JobResult

PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CRASH_ERRORS = ("CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
# The Pod Security admission's refusal, as its message says it, and the events that report a
# pod, Job or cluster that could not be created (the Job/ReplicaSet controllers', KubeRay's).
POD_SECURITY = "violates PodSecurity"
CREATE_FAILURES = ("FailedCreate", "FailedToCreateHeadPod", "FailedToCreateWorkerPod", "FailedToCreateRayCluster")
# A RayJob whose status stays empty this long has no operator acting on it.
NO_OPERATOR_AFTER_S = 60.0


def result_of(name: str, status: dict[str, Any] | None) -> JobResult:
    """The RayJob's status as a JobResult: Ray's own job status once it ended, else where it is."""
    status = status or {}
    deployment = status.get("jobDeploymentStatus", "")
    ray_status = status.get("jobStatus", "")
    why = "; ".join(p for p in (status.get("reason", ""), status.get("message", "")) if p)
    if deployment == "Complete":
        return JobResult(name, ray_status or "FAILED", why)
    if deployment in ("Failed", "ValidationFailed"):
        # A deadline or a failed submission can end the RayJob while Ray's job never ended.
        return JobResult(name, "STOPPED" if ray_status == "STOPPED" else "FAILED", why or deployment)
    if deployment == "Suspended":
        return JobResult(name, "STOPPED", why or "suspended")
    if ray_status == "RUNNING":
        return JobResult(name, "RUNNING", deployment)
    return JobResult(name, "PENDING", deployment or "waiting for the KubeRay operator")


def phase(status: dict[str, Any] | None) -> str:
    """One short progress line: deployment status / Ray job status."""
    status = status or {}
    return f"{status.get('jobDeploymentStatus') or 'New'} / {status.get('jobStatus') or '-'}"


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    st = pod.get("status", {})
    return [*st.get("initContainerStatuses", []), *st.get("containerStatuses", [])]


def pod_problem(pod: dict[str, Any]) -> str | None:
    """Why this pod does not run: an image it cannot pull, GPUs it cannot get, a crash loop."""
    name = pod.get("metadata", {}).get("name", "?")
    for container in _containers(pod):
        waiting = container.get("state", {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in PULL_ERRORS:
            return (
                f"pod {name} cannot pull image {container.get('image', '?')!r} ({reason}); "
                "check --image, that it was pushed, and the namespace's image pull secret"
            )
        if reason in CRASH_ERRORS:
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            return f"pod {name} container {container.get('name', '?')} fails to start ({reason}){detail}"
    for condition in pod.get("status", {}).get("conditions", []):
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            message = condition.get("message", "")
            if "nvidia.com/gpu" in message:
                return (
                    f"pod {name} waits for GPUs: {message.split('. preemption')[0]}; "
                    "lower --gpus, free GPUs, or wait for the autoscaler"
                )
            if condition.get("reason") == "Unschedulable":
                return f"pod {name} cannot be scheduled: {message.split('. preemption')[0]}"
    return None


def event_problem(events: Sequence[dict[str, Any]]) -> str | None:
    """Why pods are not even created, from the Warning events of the RayJob, its RayCluster and what
    they own: the namespace's Pod Security admission refusing them, or another refused create."""
    warnings = [e for e in events if e.get("type") == "Warning"]
    for wanted in (POD_SECURITY, *CREATE_FAILURES):
        for event in warnings:
            message = " ".join((event.get("message") or "").split())
            if wanted not in message and event.get("reason") != wanted:
                continue
            obj = event.get("involvedObject", {})
            who = f"{obj.get('kind', '?')} {obj.get('name', '?')}"
            if wanted == POD_SECURITY:
                level, _, why = message.partition(f"{POD_SECURITY} ")[2].partition(": ")
                return (
                    f"{who} cannot create its pods: the namespace enforces Pod Security {level} and refuses "
                    f"them ({why}); ask its admins, or see docs/clusters.md on Pod Security"
                )
            return f"{who} cannot create its pods ({event['reason']}): {message}"
    return None


def no_operator(status: dict[str, Any] | None, *, age_s: float) -> str | None:
    """The CRDs are installed but nothing acts on them: the status stays empty."""
    if (status or {}).get("jobDeploymentStatus") or age_s <= NO_OPERATOR_AFTER_S:
        return None
    return (
        f"no KubeRay operator has acted on the RayJob after {age_s:.0f}s (its status is empty): "
        "is the operator running and watching this namespace?"
    )


def stuck_reason(
    status: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    *,
    age_s: float,
    events: Sequence[dict[str, Any]] = (),
) -> str | None:
    """The first reason the RayJob makes no progress, or None while it is merely starting."""
    if reason := no_operator(status, age_s=age_s):
        return reason
    for pod in pods:
        problem = pod_problem(pod)
        if problem:
            return problem
    return event_problem(events)


def api_problem(served: list[str] | None) -> str | None:
    """What the API server's discovery of the ray.io group says: operator missing, or too old."""
    if served is None:
        return (
            f"the Kubernetes cluster has no {GROUP} API: the KubeRay operator is not installed "
            "(install it with Helm, or `invoke kind.up` for a local kind cluster)"
        )
    if VERSION not in served:
        return (
            f"the cluster's KubeRay CRDs serve {GROUP} {', '.join(served) or 'no version'}, not {VERSION}: "
            "upgrade the KubeRay operator and its CRDs to the version raybake targets"
        )
    return None


def missing_kind(kind: str, served_kinds: list[str]) -> str | None:
    """The group serves v1 but not this kind: CRDs from an operator release that predates it."""
    if kind in served_kinds:
        return None
    serves = ", ".join(sorted(served_kinds)) or "nothing"
    return f"the cluster's {GROUP}/{VERSION} API has no {kind} (it serves {serves}): upgrade its KubeRay CRDs"
