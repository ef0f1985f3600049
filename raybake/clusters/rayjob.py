"""A KubeRay RayJob per submit: a cluster of the image's pods that lives as long as the job.

The job id is the RayJob's name. KubeRay's operator submits the entrypoint itself (HTTPMode) when
the corpus is already where the cluster reads it; a local corpus must be uploaded from here, so
then KubeRay only makes the cluster (InteractiveMode), raybake submits through a port-forward
and tells the RayJob the Ray job's id. Logs come the same way; status always from the RayJob,
which outlives the cluster.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from raybake import console, poll, state
from raybake.clusters import transport
from raybake.clusters.address import AddressBackend, through_port_forward
from raybake.clusters.base import Backend, Placed
from raybake.clusters.follow import LogPrinter
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.image.pushed import image_for
from raybake.kube import kueue, manifests, stuck
from raybake.kube.client import Kube, OnDemandKube
from raybake.kube.kuberay import MANAGED_SELECTOR, cluster_selector
from raybake.result import JobResult, ended
from raybake.spec import JobSpec, shown_entrypoint
from raybake.versions import git_sha, origin_env, ray_version

POLL_S = 2.0
# KubeRay suspends only a RayJob with shutdownAfterJobFinishes, which its deletionRules exclude:
# the same merge patch trades the rules for it (suspending deletes the cluster at once anyway).
# The annotation says raybake stopped it: a suspended RayJob with a queue label is otherwise queued.
SUSPEND = {
    "metadata": {"annotations": {kueue.STOPPED_ANNOTATION: "true"}},
    "spec": {"suspend": True, "shutdownAfterJobFinishes": True, "deletionStrategy": None},
}
IDENTITY = "raybake.io/identity"
LINEAGE = "raybake.io/lineage"


class RayJobBackend(OnDemandKube, Backend):
    def __init__(self, settings: Settings, *, kube: Kube | None = None) -> None:
        self.settings = settings
        self._kube = kube

    def prepare(self, spec: JobSpec) -> Placed:
        return transport.for_cluster(spec, limit_mib=self.settings.upload_limit_mib)

    def image_identity(self) -> str:
        return image_for(self.settings)

    def manifest(self, placed: Placed) -> dict[str, Any]:
        manifest = manifests.rayjob(
            placed.runs,
            image=image_for(self.settings),
            ray_version=ray_version(),
            settings=self.settings,
            origin=manifests.Origin.here(git_sha(), corpus=placed.named.corpus),
            runtime_env={"env_vars": origin_env()},
            interactive=bool(placed.uploads),
        )
        # What went into the id, so a later submit can say what changed (submit.py).
        manifest["metadata"]["annotations"].update(
            {IDENTITY: json.dumps(dict(placed.runs.identity), sort_keys=True), LINEAGE: placed.runs.lineage}
        )
        return manifest

    def companions(self, placed: Placed, token: str) -> list[dict[str, Any]]:
        """What goes with the RayJob: its Ray token's Secret, its options' Secret, and the
        NetworkPolicy if asked for."""
        name = placed.name
        found = [manifests.token_secret(name, token)]
        if not placed.runs.entrypoint:
            found.append(manifests.spec_secret(name, placed.runs))
        if self.settings.network_policy:
            found.append(manifests.network_policy(name))
        return found

    def describe(self, placed: Placed) -> str:
        manifest = self.manifest(placed)
        shown = manifests.to_yaml(manifest, *self.companions(placed, "token"))
        options = f"# the job's options, from its Secret: {placed.runs.shown_command()}\n"
        return f"# {manifests.lifetime_note(manifest)}\n{'' if placed.runs.entrypoint else options}{shown}"

    def submit(self, placed: Placed) -> str:
        manifest = self.manifest(placed)
        self.kube.check_operator(manifest=manifest)
        created = self.kube.create_rayjob(manifest)
        name = manifest["metadata"]["name"]
        console.say(f"created RayJob {name} in namespace {self.kube.namespace}")
        token = secrets.token_urlsafe(32)
        # Kept here, not read back from the Secret later: this client then needs no `get secrets`.
        state.record_job_token(self.settings, self.kube.namespace, name, token)
        try:
            # Owned by the RayJob: they go when it goes. Until the Secret exists the pods wait for it.
            for companion in self.companions(placed, token):
                self.kube.create_owned(companion, created)
        except RaybakeError as exc:
            self._delete(name)
            raise RaybakeError(f"{exc} (RayJob {name} deleted)", exc.code) from None
        if placed.uploads:
            try:
                self._submit_with_upload(name, placed)
            except (RaybakeError, KeyboardInterrupt) as exc:
                # Nothing runs yet: a RayJob left Waiting would hold its pods until the deadline.
                self._delete(name)
                if isinstance(exc, KeyboardInterrupt):
                    raise RaybakeError(
                        f"interrupted before the job started; RayJob {name} deleted", ExitCode.INTERRUPTED
                    ) from None
                raise RaybakeError(f"{exc} (RayJob {name} deleted)", exc.code) from None
        return name

    def _delete(self, name: str) -> None:
        """Delete the RayJob (its Secret goes with it) and forget its token here."""
        self.kube.delete_rayjob(name)
        state.record_job_token(self.settings, self.kube.namespace, name, None)

    def _submit_with_upload(self, name: str, placed: Placed) -> None:
        """InteractiveMode: wait for the cluster, submit with the corpus, tell KubeRay the job id."""
        status = self._wait(name, until=lambda st: st.get("jobDeploymentStatus") == "Waiting")
        early = stuck.result_of(name, status)
        if ended(early):
            raise RaybakeError(f"the RayJob ended before its cluster was ready: {early.message}", ExitCode.FAILED)
        with self._ray(status["rayClusterName"], name) as ray:
            ray.ready()
            job_id = ray.submit(placed)
        self.kube.patch_rayjob(name, {"spec": {"jobId": job_id}})

    def _ray(self, cluster: str, job: str) -> AddressBackend:
        """The job's head through a port-forward, with the job's own token: never the user's."""
        return through_port_forward(self.settings, self.kube, cluster, token=self._token(job))

    def _token(self, job: str) -> str:
        """The token this client made for the job (kept in its state, so no Secret is read back)."""
        token = state.job_token(self.settings, self.kube.namespace, job)
        if token is None:
            raise RaybakeError(
                f"no Ray token for RayJob {job!r} in this client's state ({state.path_of(self.settings)}): "
                "it was submitted from another machine; read its logs there (its status works anywhere)",
                ExitCode.REFUSED,
            )
        return token

    def _wait(self, name: str, *, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Poll the RayJob until `until(status)` or it ends; say each new phase and why it is stuck."""
        started = time.monotonic()
        said: set[str] = set()

        def look() -> dict[str, Any] | None:
            """The status once it is what we wait for (or the end); None while it is not yet."""
            found = self.kube.rayjob(name)
            if queued := self._queued(found):
                # Suspended by Kueue, not stopped: it starts when its queue admits it.
                self._say(name, [queued.message], said)
                return None
            status = found.get("status") or {}
            lines: list[str | None] = [stuck.phase(status)]
            if until(status) or ended(stuck.result_of(name, status)):
                self._say(name, lines, said)
                return status
            cluster = status.get("rayClusterName")
            pods = self.kube.pods(cluster_selector(cluster)) if cluster else []
            # Until Ray's job runs, a pod that is never created shows only in its owner's events.
            starting = status.get("jobStatus") != "RUNNING"
            events = self.kube.events(name, *filter(None, [cluster])) if starting else []
            lines.append(stuck.stuck_reason(status, pods, age_s=time.monotonic() - started, events=events))
            self._say(name, lines, said)
            if orphaned := stuck.no_operator(status, age_s=time.monotonic() - started):
                raise RaybakeError(orphaned, ExitCode.UNREACHABLE)
            return None

        return poll.first(look, every_s=POLL_S)

    @staticmethod
    def _say(name: str, lines: list[str | None], said: set[str]) -> None:
        """Each phase and each reason once: a long wait prints what changed, not a line per poll."""
        for line in lines:
            if line and line not in said:
                said.add(line)
                console.say(f"{name}: {line}")

    def follow(self, job_id: str) -> JobResult:
        """Status from the RayJob; the log through the head while the Ray job runs; the RayJob decides."""
        status = self._wait(job_id, until=lambda st: st.get("jobStatus") == "RUNNING")
        self._print_log(job_id, status, ended=ended(stuck.result_of(job_id, status)))
        # Streams end early and clusters go away: the RayJob's own status is the answer.
        return stuck.result_of(job_id, self._wait(job_id, until=lambda st: False))

    def _print_log(self, job_id: str, status: dict[str, Any], *, ended: bool) -> None:
        """Stream the Ray job's log; one that ended between two polls is printed whole (the cluster
        stays ttlSecondsAfterFinished). Best effort: without a head the RayJob's status still decides."""
        if not (status.get("rayClusterName") and status.get("jobId")):
            return
        try:
            with self._ray(status["rayClusterName"], job_id) as ray:
                if ended:
                    printer = LogPrinter()
                    printer.feed(ray.client.get_job_logs(status["jobId"]))
                    printer.close()
                else:
                    ray.stream_logs(status["jobId"])
        except RaybakeError as exc:
            console.say(f"no log ({exc}); following the RayJob's status")

    def _queued(self, found: dict[str, Any]) -> JobResult | None:
        """PENDING with Kueue's word on it, while a queue holds the RayJob."""
        queue = kueue.queue_of(found)
        if not queue:
            return None
        workloads = self.kube.workloads(found["metadata"].get("uid", ""))
        return JobResult(found["metadata"]["name"], "PENDING", kueue.waiting_line(queue, workloads))

    def status(self, job_id: str) -> JobResult:
        found = self.kube.rayjob(job_id)
        return self._queued(found) or stuck.result_of(job_id, found.get("status"))

    def logs(self, job_id: str) -> str:
        """From Ray while the cluster lives. HTTPMode has no submitter pod to keep a copy: once the
        head is gone (ttl_after_finished_s) the outputs and manifest.json are the record."""
        status = self.kube.rayjob(job_id).get("status") or {}
        if not (status.get("rayClusterName") and status.get("jobId")):
            raise RaybakeError(f"{job_id!r} has no Ray job yet ({stuck.phase(status)})", ExitCode.REFUSED)
        self._token(job_id)  # a token this client lacks is not a cluster that is gone
        try:
            with self._ray(status["rayClusterName"], job_id) as ray:
                return ray.client.get_job_logs(status["jobId"])
        except RaybakeError as exc:
            raise RaybakeError(
                f"the logs of {job_id!r} are gone with its cluster (ttlSecondsAfterFinished): {exc}", exc.code
            ) from None

    def stop(self, job_id: str, *, delete: bool = False) -> bool:
        """Suspend: KubeRay stops the Ray job and removes the cluster, the RayJob stays; or delete it all."""
        self.kube.rayjob(job_id)
        if delete:
            self._delete(job_id)
        else:
            self.kube.patch_rayjob(job_id, SUSPEND)
        return True

    def jobs(self) -> list[dict]:
        rows = []
        for item in self.kube.rayjobs(MANAGED_SELECTOR):
            annotations = item["metadata"].get("annotations") or {}
            rows.append(
                {
                    "id": item["metadata"]["name"],
                    "status": stuck.result_of(item["metadata"]["name"], item.get("status")).status,
                    "start": item["metadata"].get("creationTimestamp"),
                    "entrypoint": shown_entrypoint(item.get("spec", {}).get("entrypoint", "")),
                    "lineage": annotations.get(LINEAGE, ""),
                    "identity": json.loads(annotations.get(IDENTITY) or "{}"),
                }
            )
        return sorted(rows, key=lambda r: r["start"] or "")
