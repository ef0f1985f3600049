"""`invoke ci.kind-dump`: what a failed end-to-end run leaves behind, as files for an artifact.

The operator's, heads', workers' and submitters' logs, `kubectl describe` of the RayJobs,
RayClusters and pods, and the events. Every command is tried: one that fails (a pod that never
started, a CRD not installed) writes its error to its file and the dump goes on.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from raybake.kube.kuberay import NODE_TYPE_LABEL, SUBMITTER_LABELS

# The label the KubeRay Helm chart puts on the operator's pod.
OPERATOR = ("app.kubernetes.io/name", "kuberay-operator")


def _role(labels: dict[str, str]) -> str | None:
    if labels.get(OPERATOR[0]) == OPERATOR[1]:
        return "operator"
    if labels.get(NODE_TYPE_LABEL) in ("head", "worker"):
        return labels[NODE_TYPE_LABEL]
    if any(label in labels for label in SUBMITTER_LABELS):
        return "submitter"
    return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def dump(out: Path, *, kubectl: str = "kubectl", context: str | None = None, timeout_s: float = 60.0) -> list[Path]:
    """Write the cluster's state under `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    base = [kubectl, *(["--context", context] if context else [])]
    written: list[Path] = []

    def save(filename: str, argv: list[str]) -> str:
        try:
            done = subprocess.run(base + argv, capture_output=True, text=True, timeout=timeout_s, check=False)
            text = done.stdout + (f"\n[exit {done.returncode}] {done.stderr}" if done.returncode else "")
        except (OSError, subprocess.TimeoutExpired) as exc:
            text = f"[could not run {argv!r}: {exc}]"
        path = out / filename
        path.write_text(text)
        written.append(path)
        return text

    save("get-all.txt", ["get", "rayjobs,rayclusters,jobs,pods,services,nodes", "-A", "-o", "wide"])
    save("events.txt", ["get", "events", "-A", "--sort-by=.lastTimestamp"])
    # The full objects too: describe leaves out status fields such as the submitter's message.
    save("rayjobs.yaml", ["get", "rayjobs,rayclusters", "-A", "-o", "yaml"])
    for kind in ("rayjob", "raycluster", "job"):
        save(f"describe-{kind}.txt", ["describe", kind, "-A"])
    pods_json = save("pods.json", ["get", "pods", "-A", "-o", "json"])
    try:
        pods = json.loads(pods_json).get("items", [])
    except json.JSONDecodeError:
        pods = []
    for pod in pods:
        meta = pod.get("metadata", {})
        role = _role(meta.get("labels") or {})
        if role is None:
            continue
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        stem = f"{role}-{_safe(namespace)}-{_safe(name)}"
        save(f"{stem}.describe.txt", ["describe", "pod", "-n", namespace, name])
        save(f"{stem}.log", ["logs", "-n", namespace, name, "--all-containers", "--prefix", "--tail=-1"])
        save(f"{stem}.previous.log", ["logs", "-n", namespace, name, "--all-containers", "--prefix", "--previous"])
    return written
