"""A team's long-lived RayCluster: `invoke cluster up|upgrade|status|down`, and submits to it by name.

An admin makes the cluster once with the image `invoke push` recorded and upgrades it after a
rebuild; each researcher submits with `--cluster NAME`. The cluster keeps a Ray token in a
Secret for its life; a submit by name reads it there (a `get` on that one Secret), accepts the
image the cluster was made with, and sizes the job to the GPU group, so the autoscaler adds
the GPU workers the job asks for.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from raybake import console
from raybake.clusters.address import AddressBackend, read_token, through_port_forward
from raybake.clusters.base import Placed
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.image.pushed import image_for
from raybake.kube import manifests, raycluster, stuck
from raybake.kube.client import Kube, OnDemandKube
from raybake.kube.kuberay import cluster_selector
from raybake.spec import JobSpec
from raybake.versions import ray_version

GROUP_LABEL = "ray.io/group"
# Ray job states that hold a cluster's workers: an upgrade recreates every pod and ends them.
ACTIVE = ("PENDING", "RUNNING")
RECREATE_NOTE = (
    "KubeRay recreates the head and every worker on the new spec (upgradeStrategy Recreate): jobs in "
    "flight end, and GPU workers come back as jobs ask for them"
)


class TeamCluster(OnDemandKube):
    """One named RayCluster in the namespace the settings name."""

    def __init__(self, settings: Settings, name: str, *, kube: Kube | None = None) -> None:
        self.settings, self.name = settings, manifests.check_name(name)
        self._kube = kube

    def manifest(self) -> dict[str, Any]:
        return raycluster.raycluster(
            self.name, image=image_for(self.settings), ray_version=ray_version(), settings=self.settings
        )

    def companions(self, token: str) -> list[dict[str, Any]]:
        """The Secret of the cluster's Ray token, and the NetworkPolicy if asked for."""
        found = [manifests.token_secret(self.name, token)]
        if self.settings.network_policy:
            found.append(manifests.network_policy(self.name))
        return found

    def describe(self) -> str:
        return manifests.to_yaml(self.manifest(), *self.companions("token"))

    def existing(self) -> dict[str, Any]:
        found = self.kube.raycluster(self.name)
        if found is None:
            raise RaybakeError(
                f"no RayCluster {self.name!r} in namespace {self.kube.namespace!r}; `invoke cluster up` makes it",
                ExitCode.REFUSED,
            )
        if not raycluster.is_raybakes(found):
            raise RaybakeError(
                f"the RayCluster {self.name!r} was not made by raybake; `invoke cluster` changes only its own",
                ExitCode.REFUSED,
            )
        return found

    def up(self) -> str:
        manifest = self.manifest()
        self.kube.check_operator(raycluster.KIND, manifest=manifest)
        created = self.kube.create_raycluster(manifest)
        if created is None:
            found = self.kube.raycluster(self.name) or manifest
            return (
                f"RayCluster {self.name} exists in namespace {self.kube.namespace} (image "
                f"{raycluster.image_of(found)}); `invoke cluster upgrade` changes it"
            )
        try:
            # Owned by the RayCluster: Kubernetes deletes them with it. Its pods wait for the Secret.
            for companion in self.companions(secrets.token_urlsafe(32)):
                self.kube.create_owned(companion, created)
        except RaybakeError as exc:
            self.kube.delete_raycluster(self.name)
            raise RaybakeError(f"{exc} (RayCluster {self.name} deleted)", exc.code) from None
        return (
            f"created RayCluster {self.name} in namespace {self.kube.namespace}: image "
            f"{raycluster.image_of(manifest)}, {self._sizes()}; "
            f"submit with `invoke submit --cluster {self.name} --corpus ...`"
        )

    def _sizes(self) -> str:
        s = self.settings
        parts = [f"{s.min_gpus} to {s.max_gpus} GPU workers"] if s.max_gpus else []
        if s.max_cpu_workers:
            parts.append(f"0 to {s.max_cpu_workers} CPU workers")
        return ", ".join(parts) + f" (autoscaled; idle ones go after {s.idle_timeout_s}s)"

    def upgrade(self, *, force: bool = False) -> str:
        found = self.existing()
        manifest = self.manifest()
        if found.get("spec") == manifest["spec"]:
            return f"RayCluster {self.name} already runs {raycluster.image_of(found)} with these settings"
        self.kube.check_operator(raycluster.KIND, manifest=manifest)
        if not force and (active := self.active_jobs()):
            raise RaybakeError(
                f"refused: {len(active)} job(s) still pending or running on {self.name} "
                f"({', '.join(active[:3])}{', ...' if len(active) > 3 else ''}); {RECREATE_NOTE}. "
                "Wait for them, or pass --force",
                ExitCode.REFUSED,
            )
        self.kube.patch_raycluster(
            self.name, {"metadata": {"annotations": manifest["metadata"]["annotations"]}, "spec": manifest["spec"]}
        )
        before, after = raycluster.image_of(found), raycluster.image_of(manifest)
        change = f"image {before} -> {after}" if before != after else "settings changed, same image"
        return f"upgraded RayCluster {self.name}: {change}; {RECREATE_NOTE}"

    def down(self) -> str:
        self.existing()
        self.kube.delete_raycluster(self.name)
        # Owned by the cluster, so the garbage collector would delete it too; now, not eventually.
        self.kube.delete_secret(manifests.token_secret_name(self.name))
        return f"deleted RayCluster {self.name} and its token Secret from namespace {self.kube.namespace}"

    def _ray(self) -> AddressBackend:
        token = self.kube.secret_value(manifests.token_secret_name(self.name), manifests.TOKEN_KEY)
        return through_port_forward(self.settings, self.kube, self.name, token=token)

    def jobs(self) -> list[dict[str, Any]] | None:
        """The Ray jobs of the cluster; None while it has no running head (so none can run)."""
        try:
            ray = self._ray()
        except RaybakeError as exc:
            if exc.code == ExitCode.UNREACHABLE and "no running head pod" in str(exc):
                return None
            raise
        with ray:
            return ray.jobs()

    def active_jobs(self) -> list[str]:
        return [job["id"] for job in self.jobs() or [] if job["status"] in ACTIVE]

    def status(self) -> list[str]:
        """A few lines: image and Ray, the head, each group's workers and GPUs, jobs, anything stuck."""
        found = self.existing()
        state = found.get("status") or {}
        pods = self.kube.pods(cluster_selector(self.name))
        lines = [
            f"RayCluster {self.name} (namespace {self.kube.namespace}): {state.get('state') or 'starting'}, "
            f"Ray {found['spec'].get('rayVersion', '?')}, image {raycluster.image_of(found)}",
            f"head: {_head(pods)}",
        ]
        for group in found["spec"].get("workerGroupSpecs", []):
            lines.append(_group_line(group, pods))
        try:
            jobs = self.jobs()
        except RaybakeError as exc:
            lines.append(f"jobs: unknown ({exc})")
        else:
            if jobs is None:
                lines.append("jobs: none (no running head)")
            else:
                counts = {s: sum(1 for j in jobs if j["status"] == s) for s in ACTIVE}
                lines.append(f"jobs: {counts['RUNNING']} running, {counts['PENDING']} waiting, {len(jobs)} in all")
        lines.extend(f"stuck: {problem}" for pod in pods if (problem := stuck.pod_problem(pod)))
        return lines


def _head(pods: list[dict[str, Any]]) -> str:
    heads = [p for p in pods if (p["metadata"].get("labels") or {}).get("ray.io/node-type") == "head"]
    if not heads:
        return "no pod yet"
    head = heads[0]
    return f"{head.get('status', {}).get('phase', 'Pending')} ({head['metadata']['name']})"


def _group_line(group: dict[str, Any], pods: list[dict[str, Any]]) -> str:
    name = group["groupName"]
    mine = [p for p in pods if (p["metadata"].get("labels") or {}).get(GROUP_LABEL) == name]
    running = sum(1 for p in mine if p.get("status", {}).get("phase") == "Running")
    starting = len(mine) - running
    line = f"{name} workers: {running} running"
    if starting:
        line += f", {starting} starting (scaling up)"
    line += f", {group.get('minReplicas', 0)} to {group.get('maxReplicas', 0)} autoscaled"
    if name == raycluster.GPU_GROUP:
        line += f"; GPUs: {running} ready of at most {group.get('maxReplicas', 0)}"
    return line


@dataclasses.dataclass(frozen=True)
class Sizing:
    """What a job on the team cluster asks Ray for: `workers` of `cpus` CPUs, one GPU each if `gpu`.

    Asked for whether or not the workers exist yet: the autoscaler adds what Ray cannot place."""

    gpu: bool
    workers: int
    cpus: str

    def job_args(self, given: tuple[str, ...]) -> tuple[str, ...]:
        """The job's sizing flags, except those the user already gave (--job-args wins)."""
        wanted = {"--workers": str(self.workers), "--cpus-per-worker": self.cpus}
        if self.gpu:
            wanted["--device"] = "cuda"
        return tuple(arg for flag, value in wanted.items() if flag not in given for arg in (flag, value))


def sizing(cluster: dict[str, Any], settings: Settings) -> Sizing | None:
    """The GPU group, as many GPUs as --gpus asks (default: as many as the group may have); else
    the CPU group at its most."""
    if group := raycluster.gpu_group(cluster):
        most = int(group.get("maxReplicas", 0))
        return Sizing(
            gpu=True, workers=min(settings.gpus, most) if settings.gpus else most, cpus=raycluster.worker_cpus(group)
        )
    groups = cluster["spec"].get("workerGroupSpecs", [])
    if groups:
        return Sizing(gpu=False, workers=int(groups[0].get("maxReplicas", 1)), cpus=raycluster.worker_cpus(groups[0]))
    return None


class TeamClusterBackend(AddressBackend):
    """The address backend on a team cluster: its token, its image, jobs sized to its groups."""

    def __init__(self, *args: Any, team: str, declared: dict[str, Any], api: Kube, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.team, self.kube = team, api
        self.sizing = sizing(declared, self.settings)

    def prepare(self, spec: JobSpec) -> Placed:
        placed = super().prepare(spec)
        if self.sizing is None or placed.runs.entrypoint:
            return placed
        runs = dataclasses.replace(
            placed.runs, job_args=(*placed.runs.job_args, *self.sizing.job_args(placed.runs.job_args))
        )
        return dataclasses.replace(placed, runs=runs)

    def describe(self, placed: Placed) -> str:
        head = f"# RayCluster {self.team}: image {self.expected_image} (the cluster's own), token from its Secret\n"
        return head + super().describe(placed)

    def submit(self, placed: Placed) -> str:
        if self.sizing is not None and self.sizing.gpu:
            up = sum(
                1
                for p in self.kube.pods(cluster_selector(self.team))
                if (p["metadata"].get("labels") or {}).get(GROUP_LABEL) == raycluster.GPU_GROUP
                and p.get("status", {}).get("phase") == "Running"
            )
            if up < self.sizing.workers:
                console.say(
                    f"cluster {self.team}: scaling up {self.sizing.workers - up} GPU workers for this job "
                    f"({up} running); the autoscaler adds them, minutes on a fresh GPU node"
                )
        return super().submit(placed)


def backend(settings: Settings, kube: Kube, name: str) -> AddressBackend:
    """The backend for `--cluster NAME`: a raybake team cluster with its own token and image, or
    any other RayCluster with the user's token and the image this checkout pushed."""
    found = kube.raycluster(name)
    if found is None or not raycluster.is_raybakes(found):
        return through_port_forward(settings, kube, name)
    try:
        token: str | None = kube.secret_value(manifests.token_secret_name(name), manifests.TOKEN_KEY)
    except RaybakeError as exc:
        token = read_token(settings)
        if token is None:
            raise RaybakeError(
                f"cannot read the Ray token of cluster {name!r} ({exc}); ask its admin for `get` on the Secret "
                f"{manifests.token_secret_name(name)!r} (docs/clusters.md), or set ${settings.token_env}",
                ExitCode.UNREACHABLE,
            ) from None
    own = dataclasses.replace(settings, expected_image=raycluster.image_of(found))
    return through_port_forward(
        own, kube, name, token=token, kind=TeamClusterBackend, team=name, declared=found, api=kube
    )
