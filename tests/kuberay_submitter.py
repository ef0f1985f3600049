"""KubeRay v1.7's submitters: the operator's HTTP request (HTTPMode), and the bash line of the others.

HTTPMode (what raybake renders): the operator posts the RayJob's entrypoint, runtime env and
metadata as JSON to the head's `/api/jobs/` (dashboardclient/dashboard_httpclient.go,
ConvertRayJobToReq and SubmitJobReq), with the cluster's token in `x-ray-authorization`, then
polls `/api/jobs/<id>`. No container runs for it. http_submit sends that request.

The other modes run a shell: `run_submitter` below.

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
import time
import urllib.error
import urllib.request
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


def http_request(rayjob: dict[str, Any]) -> dict[str, Any]:
    """ConvertRayJobToReq: the JSON body of the operator's POST (omitempty fields left out)."""
    spec = rayjob["spec"]
    body: dict[str, Any] = {"entrypoint": spec["entrypoint"], "submission_id": rayjob["metadata"]["name"]}
    if spec.get("runtimeEnvYAML"):
        body["runtime_env"] = yaml.safe_load(spec["runtimeEnvYAML"])
    if spec.get("metadata"):
        body["metadata"] = spec["metadata"]
    return body


def http_submit(rayjob: dict[str, Any], *, address: str, token: str, timeout: float = 600) -> dict[str, Any]:
    """Submit as the operator does in HTTPMode and poll until the job ends; its final job info."""
    headers = {"Content-Type": "application/json", "x-ray-authorization": f"Bearer {token}"}

    def call(path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{address}{path}", data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{path}: HTTP {exc.code}: {exc.read().decode()[-2000:]}") from None

    deadline = time.monotonic() + timeout
    while True:
        # A head whose job agent is not up yet answers 500; the operator requeues and submits again.
        try:
            job_id = call("/api/jobs/", http_request(rayjob))["job_id"]
            break
        except AssertionError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)
    while (info := call(f"/api/jobs/{job_id}"))["status"] not in ("SUCCEEDED", "FAILED", "STOPPED"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {info['status']} after {timeout}s")
        time.sleep(1)
    return {**info, "logs": call(f"/api/jobs/{job_id}/logs")["logs"]}
