"""KubeRay v1.7's submitter, as the shell sees it: one bash line from a RayJob, run by `bash -ce`.

KubeRay's controller (ray-operator/controllers/ray/common/job.go, BuildJobSubmitCommand) joins
words with spaces into a single string: a wait for the dashboard, then `ray job submit` with the
runtime env's JSON in Go's strconv.Quote double quotes and the entrypoint pasted raw after `--`.
In K8sJobMode (a submitter pod that may retry) it is wrapped in a `ray job status` check, with
`--no-wait` and a `ray job logs --follow` after; SidecarMode (a container in the head pod, on
127.0.0.1) submits once. The submitter container runs it as `/bin/bash -ce -- LINE`. Written
from that description, so the hostile-name tests put raybake's RayJob through the same shells.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

HEALTH = (
    "python -c \"import urllib.request; r=urllib.request.urlopen('{url}', timeout=10); "
    "exit(0 if b'success' in r.read() else 1)\""
)


def go_quote(text: str) -> str:
    """Go's strconv.Quote for what JSON holds: backslash and double quote escaped, controls as \\n or \\xNN."""
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def submit_line(rayjob: dict[str, Any], *, address: str) -> str:
    """The bash line KubeRay's submitter runs for this RayJob in its submissionMode (job id = its name).

    K8sJobMode (a submitter pod that may retry) checks `ray job status` first and submits with
    `--no-wait`; SidecarMode (a container in the head pod) submits once."""
    spec = rayjob["spec"]
    job_id = rayjob["metadata"]["name"]
    retries = spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    words = ["until", HEALTH.format(url=f"{address}/api/gcs_healthz"), ">/dev/null", "2>&1", ";"]
    words += ["do", "echo", go_quote(f"Waiting for Ray Dashboard GCS to become healthy at {address} ..."), ";"]
    words += ["sleep", "2", ";", "done", ";"]
    if retries:
        words += ["if", "!", "ray", "job", "status", "--address", address, job_id, ">/dev/null", "2>&1", ";", "then"]
    words += ["ray", "job", "submit", "--address", address, *(["--no-wait"] if retries else [])]
    if spec.get("runtimeEnvYAML"):
        runtime_env = json.dumps(yaml.safe_load(spec["runtimeEnvYAML"]), separators=(",", ":"))
        words += ["--runtime-env-json", go_quote(runtime_env)]
    if spec.get("metadata"):
        words += ["--metadata-json", go_quote(json.dumps(spec["metadata"], separators=(",", ":")))]
    words += ["--submission-id", job_id, "--", spec["entrypoint"].strip(), ";"]
    if retries:
        words += ["fi", ";", "ray", "job", "logs", "--address", address, "--follow", job_id]
    return " ".join(words)


def run_submitter(
    rayjob: dict[str, Any], *, address: str, env: dict[str, str], cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the line as the submitter container does: `/bin/bash -ce -- LINE`."""
    line = submit_line(rayjob, address=address)
    return subprocess.run(
        ["/bin/bash", "-ce", "--", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
