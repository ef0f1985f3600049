"""An existing Ray cluster reached by its job submission URL (the dashboard, port 8265).

Everything goes through Ray's JobSubmissionClient: the same path for the embedded local Ray,
a long-running cluster and, behind a port-forward, a KubeRay head.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from job import urls
from raybake import console, objectstore, poll
from raybake.clusters import transport
from raybake.clusters.base import Backend, Placed
from raybake.clusters.follow import LogPrinter
from raybake.config import RAY_DASHBOARD_PORT, Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.kube.kuberay import cluster_selector
from raybake.kube.manifests import to_yaml
from raybake.kube.portforward import Forward
from raybake.result import AlreadySubmitted, JobResult, ended
from raybake.spec import SPEC_VARIABLE, JobSpec, shown_entrypoint
from raybake.versions import ROOT, origin_env, ray_version

if TYPE_CHECKING:
    from raybake.kube.client import Kube

# Poll interval once the log stream has ended but the job has not (streams end early).
POLL_S = 1.0
# How often the job's status is read while its log streams: how late a follower sees the end.
END_POLL_S = 0.25
# How long `stop --delete` waits for the job to end before it can delete it.
STOP_WAIT_S = 60.0


def read_token(settings: Settings, default_file: Path | None = None) -> str | None:
    """The Ray auth token: from the environment variable, else the token file, else none."""
    token = os.environ.get(settings.token_env)
    if token:
        return token.strip()
    return read_token_file(settings.token_file, os.environ.get("RAY_AUTH_TOKEN_PATH"), default_file)


def read_token_file(*paths: str | Path | None) -> str | None:
    """The token in the first of these files that exists."""
    for path in paths:
        if path and Path(path).expanduser().is_file():
            return Path(path).expanduser().read_text().strip()
    return None


def shown_env(env_vars: dict[str, str]) -> dict[str, str]:
    """A runtime env's variables as a dry run prints them: the options stand under `options`."""
    return {k: "<the options above>" if k == SPEC_VARIABLE else v for k, v in env_vars.items()}


def check_reachable(url: str, timeout: float) -> None:
    """Fail in bounded time: a TCP connect first, before Ray's client waits on its own terms."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RaybakeError(
            f"not a job submission URL: {url!r} (expected http://HOST:{RAY_DASHBOARD_PORT})", ExitCode.REFUSED
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise RaybakeError(
            f"cannot reach the Ray cluster at {url!r}: {exc.strerror or exc}; "
            "check the address and that the cluster is up",
            ExitCode.UNREACHABLE,
        ) from None


def check_token_transport(url: str, *, insecure_http: bool) -> None:
    """A token goes over TLS, or to this machine: on plain http anyone on the path reads it."""
    parsed = urlparse(url)
    if parsed.scheme == "https" or insecure_http:
        return
    host = parsed.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RaybakeError(
            f"refusing to send the Ray token over plain http to {host!r}: anyone on the way could read it; "
            "use the cluster's https:// URL, or --insecure-http on a network you trust",
            ExitCode.REFUSED,
        )


def version_problem(*, cluster: str, expected: str) -> str | None:
    if cluster == expected:
        return None
    return f"the cluster runs Ray {cluster}, this checkout pins Ray {expected} (requirements.txt)"


def running_images(pods: list[dict[str, Any]]) -> set[str]:
    """Each container's image, by digest where the kubelet reports one (a tag can move, a digest not)."""
    found = set()
    for pod in pods:
        ids = {c.get("name"): c.get("imageID", "") for c in pod.get("status", {}).get("containerStatuses", [])}
        for container in pod.get("spec", {}).get("containers", []):
            image, image_id = container.get("image", ""), ids.get(container.get("name"), "")
            found.add(image if "@" in image or "@sha256:" not in image_id else f"{image}@{image_id.split('@')[-1]}")
    return found


def image_problem(*, running: set[str], expected: str | None) -> str | None:
    """None when every pod runs the expected image: the same reference (tag), or the same digest."""
    if expected is None or not running:
        return None
    digest = expected.split("@")[-1] if "@" in expected else None
    others = {r for r in running if expected not in (r, r.split("@")[0]) and not (digest and r.endswith("@" + digest))}
    if not others:
        return None
    return f"the cluster's pods run {', '.join(sorted(others))}, not the image built here ({expected})"


def expected_image(settings: Settings) -> str | None:
    """What the pods should run: named in settings, else the digest `invoke push` recorded."""
    from raybake.image.pushed import last_pushed

    return settings.expected_image or settings.image or last_pushed(settings)


class AddressBackend(Backend):
    def __init__(
        self,
        settings: Settings,
        url: str,
        *,
        token_file: Path | None = None,
        token: str | None = None,
        forward: Forward | None = None,
        cluster_images: set[str] | None = None,
    ) -> None:
        self.settings = settings
        self.url = url.rstrip("/")
        # A token given is this cluster's own (a RayJob's Secret): the environment's is for --address.
        self.token = token if token is not None else read_token(settings, token_file)
        # The port-forward this backend reaches the cluster through, closed with the backend.
        self.forward = forward
        # The images the cluster's pods run, where Kubernetes told us (--cluster).
        self.cluster_images = cluster_images or set()
        # The image the cluster should run: checked before submitting where the pods are known,
        # and by the job itself, which warns loudly when it runs in another one.
        self.expected_image = expected_image(settings)
        self._client: Any = None

    @property
    def ships_job(self) -> bool:
        """Whether job/ travels from this checkout instead of running from the cluster's image."""
        return self.settings.ship_job

    def image_identity(self) -> str:
        # Where job/ travels from this checkout, no image says what runs: job/'s content does.
        return f"job/ {transport.tree_digest(ROOT / 'job')}" if self.ships_job else (self.expected_image or "")

    @property
    def verify(self) -> bool | str:
        return self.settings.ca_bundle or self.settings.verify_tls

    @property
    def headers(self) -> dict[str, str] | None:
        if not self.token:
            return None
        check_token_transport(self.url, insecure_http=self.settings.insecure_http)
        return {"Authorization": f"Bearer {self.token}"}

    def close(self) -> None:
        if self.forward is not None:
            self.forward.close()
            self.forward = None

    def refused(self, answer: str) -> RaybakeError:
        return RaybakeError(
            f"the Ray cluster at {self.url!r} refused the token: {answer}; set the token in "
            f"${self.settings.token_env} or raybake.token_file (a file holding it)",
            ExitCode.UNREACHABLE,
        )

    def ray_version(self) -> str:
        """The cluster's Ray version, which also proves the token is accepted."""
        import requests

        check_reachable(self.url, self.settings.connect_timeout_s)
        try:
            answer = requests.get(
                f"{self.url}/api/version",
                headers=self.headers,
                verify=self.verify,
                timeout=self.settings.connect_timeout_s,
            )
        except requests.exceptions.SSLError as exc:
            raise RaybakeError(
                f"TLS verification of {self.url!r} failed ({type(exc).__name__}); pass --ca-bundle PATH "
                "with the cluster's CA, or --insecure on a network you trust",
                ExitCode.UNREACHABLE,
            ) from None
        except requests.RequestException as exc:
            raise RaybakeError(
                f"cannot reach the Ray cluster at {self.url!r}: {type(exc).__name__}", ExitCode.UNREACHABLE
            ) from None
        if answer.status_code in (401, 403):
            raise self.refused(answer.text.strip().splitlines()[0] if answer.text.strip() else answer.reason)
        if not answer.ok:
            raise RaybakeError(
                f"the Ray cluster at {self.url!r} answered HTTP {answer.status_code} to /api/version",
                ExitCode.UNREACHABLE,
            )
        return str(answer.json().get("ray_version", "unknown"))

    def check_cluster(self) -> None:
        """Refuse a cluster that runs another Ray or another image, unless the user allows it."""
        expected_image = self.expected_image
        problems = [
            p
            for p in (
                version_problem(cluster=self.ray_version(), expected=ray_version()),
                image_problem(running=self.cluster_images, expected=expected_image),
            )
            if p
        ]
        if problems and not self.settings.allow_image_mismatch:
            raise RaybakeError(
                "refused: " + "; ".join(problems) + " (--allow-image-mismatch submits anyway)", ExitCode.REFUSED
            )
        for problem in problems:
            console.say(f"warning: {problem}")

    @property
    def client(self) -> Any:
        if self._client is None:
            check_reachable(self.url, self.settings.connect_timeout_s)
            from ray.job_submission import JobSubmissionClient

            # Ray's client logs every upload and socket at INFO; the user wants the job's own lines.
            for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
                logging.getLogger(name).setLevel(logging.WARNING)
            try:
                self._client = JobSubmissionClient(self.url, headers=self.headers, verify=self.verify)
            except Exception as exc:  # noqa: BLE001 - Ray raises bare exceptions for auth and version errors
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if "auth" in first.lower() or "401" in first:
                    raise self.refused(first) from None
                raise RaybakeError(
                    f"cannot use the Ray cluster at {self.url!r}: {first}", ExitCode.UNREACHABLE
                ) from None
        return self._client

    def prepare(self, spec: JobSpec) -> Placed:
        """A small local corpus travels with the job; URIs and cluster paths pass through."""
        return transport.for_cluster(spec, limit_mib=self.settings.upload_limit_mib, shares_disk=True)

    def runtime_env(self, placed: Placed) -> dict[str, Any]:
        # Where the object store is (not who may use it: credentials are the nodes' environment).
        store = objectstore.job_env(self.settings)
        env: dict[str, Any] = {**placed.uploads, "env_vars": {**origin_env(), **store}}
        if not placed.runs.entrypoint:
            # The options, out of the entrypoint that every job listing and process list shows:
            # the job's runtime env opens only to this cluster's token.
            env["env_vars"][SPEC_VARIABLE] = placed.runs.encoded()
        if self.ships_job:
            env["py_modules"] = [str(ROOT / "job")]
            # Bytecode caches change the package's hash, and with it the job's warm workers' pool.
            env["excludes"] = env.get("excludes") or transport.UPLOAD_EXCLUDES
        elif expected := self.expected_image:
            # The job warns in its log when the pods run another image (job/driver.py).
            env["env_vars"]["RAYBAKE_EXPECTED_IMAGE"] = expected
        return env

    def ready(self) -> None:
        self.check_cluster()

    def entrypoint(self, spec: JobSpec) -> str:
        """The command Ray runs: `python` is the cluster's, from its image."""
        return spec.command()

    def describe(self, placed: Placed) -> str:
        runtime_env = self.runtime_env(placed)
        return to_yaml(
            {
                "url": self.url,
                "entrypoint": self.entrypoint(placed.runs),
                "options": shown_entrypoint(self.entrypoint(placed.runs), runtime_env["env_vars"]),
                "runtime_env": {**runtime_env, "env_vars": shown_env(runtime_env["env_vars"])},
            }
        )

    def submit(self, placed: Placed) -> str:
        import requests

        spec = placed.runs
        try:
            return self.client.submit_job(
                entrypoint=self.entrypoint(spec),
                submission_id=spec.name or None,
                runtime_env=self.runtime_env(placed),
                metadata={
                    "raybake.task": spec.task,
                    "raybake.output": urls.redact(spec.output),
                    # What went into the id, so a later submit can say what changed (submit.py).
                    "raybake.lineage": spec.lineage,
                    "raybake.identity": json.dumps(dict(spec.identity), sort_keys=True),
                },
            )
        except (RuntimeError, OSError, requests.RequestException) as exc:
            if "already exists" in str(exc):
                raise AlreadySubmitted(f"the cluster already has a job {spec.name!r}", ExitCode.REFUSED) from None
            # Ray's client raises bare RuntimeErrors whose text is an HTTP body, a traceback at times.
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = lines[0] if lines else type(exc).__name__
            raise RaybakeError(
                f"the Ray cluster at {self.url!r} did not take the job: {reason}", ExitCode.UNREACHABLE
            ) from None

    def follow(self, job_id: str) -> JobResult:
        self.stream_logs(job_id)
        return poll.until(lambda: self.status(job_id), done=ended, every_s=POLL_S)

    def stream_logs(self, job_id: str) -> None:
        """Print the job's log as it grows, until the job ends (or the stream does, early).

        Ray's stream tells of a job's end seconds after its status does (3 s on a quiet local Ray,
        longer than a small job's work): the status is watched beside it, and at the end the
        rest of the log is read at once."""
        printer = LogPrinter()

        async def tail() -> None:
            async for chunk in self.client.tail_job_logs(job_id):
                printer.feed(chunk)

        async def until_ended() -> None:
            loop = asyncio.get_running_loop()
            while not ended(await loop.run_in_executor(None, self.status, job_id)):
                await asyncio.sleep(END_POLL_S)

        async def follow() -> bool:
            """True if the status said the job ended before the stream did."""
            streaming, watching = asyncio.create_task(tail()), asyncio.create_task(until_ended())
            done, _ = await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
            streaming.cancel()
            watching.cancel()
            if streaming in done:
                streaming.result()  # the stream's own error, if it broke
                return False
            watching.result()
            return True

        try:
            if asyncio.run(follow()):
                printer.catch_up(self.client.get_job_logs(job_id))
        except Exception as exc:  # noqa: BLE001 - a broken stream is not a failed job: poll below
            printer.close()
            console.say(f"log stream ended early ({type(exc).__name__}); waiting for the job's status")
        printer.close()

    def status(self, job_id: str) -> JobResult:
        try:
            info = self.client.get_job_info(job_id)
        except RuntimeError as exc:
            raise RaybakeError(
                f"no job {job_id!r} on {self.url}: {str(exc).splitlines()[0]}", ExitCode.REFUSED
            ) from None
        return JobResult(job_id=job_id, status=str(info.status.value), message=info.message or "")

    def logs(self, job_id: str) -> str:
        self.status(job_id)
        return self.client.get_job_logs(job_id)

    def stop(self, job_id: str, *, delete: bool = False) -> bool:
        """Stop the job; with `delete`, also remove its record and logs (Ray keeps them otherwise)."""
        self.status(job_id)
        stopped = bool(self.client.stop_job(job_id))
        if delete:
            poll.until(
                lambda: self.status(job_id),
                done=ended,
                every_s=POLL_S,
                within_s=STOP_WAIT_S,
                gave_up=lambda: RaybakeError(
                    f"job {job_id!r} did not stop within {STOP_WAIT_S:.0f}s; not deleted", ExitCode.UNREACHABLE
                ),
            )
            self.client.delete_job(job_id)
        return stopped or delete

    def jobs(self) -> list[dict]:
        rows = []
        for job in self.client.list_jobs():
            rows.append(
                {
                    "id": job.submission_id or job.job_id,
                    "status": str(job.status.value),
                    "start": job.start_time,
                    "entrypoint": shown_entrypoint(job.entrypoint, (job.runtime_env or {}).get("env_vars")),
                    "lineage": (job.metadata or {}).get("raybake.lineage", ""),
                    "identity": json.loads((job.metadata or {}).get("raybake.identity") or "{}"),
                }
            )
        return sorted(rows, key=lambda r: r["start"] or 0)


def through_port_forward(
    settings: Settings,
    kube: Kube,
    cluster: str,
    *,
    token: str | None = None,
    kind: type[AddressBackend] | None = None,
    **extra: Any,
) -> AddressBackend:
    """The address backend (or `kind` of it, made with `extra`) on a RayCluster, reached through
    its head service.

    `token`: the cluster's own (a RayJob's or team cluster's Secret); None means the user's."""
    head = kube.head_pod(cluster)
    images = running_images(kube.pods(cluster_selector(cluster)))
    forward = kube.forward(head["metadata"]["name"], RAY_DASHBOARD_PORT)
    made = kind or AddressBackend
    return made(settings, forward.url, token=token, forward=forward, cluster_images=images, **extra)
