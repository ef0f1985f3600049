"""Kueue, as a RayJob meets it: the queue label, the suspended start, the Workload's admission.

Kueue's RayJob integration admits a RayJob created with `spec.suspend: true` and the label
`kueue.x-k8s.io/queue-name`: it makes a Workload for it, and unsuspends the RayJob once the
queue's ClusterQueue has quota for all of its pods. Until then KubeRay reports the RayJob as
Suspended, which without a queue would mean stopped. Kueue also insists on
shutdownAfterJobFinishes (a finished job's cluster must give its quota back).
"""

from __future__ import annotations

from typing import Any

KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta1"
QUEUE_LABEL = f"{KUEUE_GROUP}/queue-name"
# What `invoke stop` puts on a RayJob it suspends, so a stopped job never reads as queued.
STOPPED_ANNOTATION = "raybake.io/stopped"


def queue_of(rayjob: dict[str, Any]) -> str | None:
    """The Kueue queue a RayJob waits in while it is suspended and raybake did not stop it."""
    meta = rayjob.get("metadata", {})
    queue = (meta.get("labels") or {}).get(QUEUE_LABEL)
    held = rayjob.get("spec", {}).get("suspend") and not (meta.get("annotations") or {}).get(STOPPED_ANNOTATION)
    return queue if queue and held else None


def waiting_line(queue: str, workloads: list[dict[str, Any]] | None) -> str:
    """One progress line for a RayJob Kueue holds: the queue, and the Workload's reason where known."""
    line = f"queued in {queue} (Kueue)"
    reason = next((admission(w) for w in workloads or []), None)
    return f"{line}: {reason}" if reason else line


def admission(workload: dict[str, Any]) -> str:
    """The Workload's admission state in a few words, from its conditions (as `kubectl describe`)."""
    status = workload.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions", [])}
    if conditions.get("Evicted", {}).get("status") == "True":
        return f"evicted: {conditions['Evicted'].get('message', '')}".rstrip(": ")
    if conditions.get("Admitted", {}).get("status") == "True":
        cluster_queue = (status.get("admission") or {}).get("clusterQueue", "")
        return f"admitted by ClusterQueue {cluster_queue}".rstrip()
    reserved = conditions.get("QuotaReserved")
    if reserved and reserved.get("message"):
        return f"waiting for quota: {reserved['message']}"
    return "waiting for quota"
