"""The KubeRay RayJob for a JobSpec, as plain data: built as dicts, printed with a YAML dumper.

Read it top to bottom like the KubeRay samples: who and what in metadata, how long it may live
in the spec, then the cluster, a head that only drives and one worker group that computes. Only
fields of the ray.io/v1 RayJob schema of the pinned KubeRay (versions.KUBERAY) appear (tests/unit validates each).
"""

from __future__ import annotations

import copy
import getpass
import re
from dataclasses import dataclass
from typing import Any

import yaml

from job import urls
from raybake.config import RAY_DASHBOARD_PORT, Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.kube import kueue, pods
from raybake.kube.kuberay import API_VERSION, MANAGED_BY, NODE_TYPE_LABEL
from raybake.spec import SPEC_VARIABLE, JobSpec, shown_entrypoint

# KubeRay names the cluster and its services after the RayJob: a DNS-1035 label of at most 47.
MAX_NAME = 47
NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
REDACTED = "<redacted>"
SECRET = re.compile(r"token|password|secret|credential|api[_-]?key|access[_-]?key", re.IGNORECASE)
# The label raybake puts on a job's pods, Secret and NetworkPolicy.
JOB_LABEL = "raybake.io/job"
# The key of the Ray token in its Secret: KubeRay v1.7 reads this one.
TOKEN_KEY = "auth_token"
# KubeRay's operator submits the job over HTTP: it adds no container (docs/clusters.md).
SUBMISSION_MODE = "HTTPMode"
# The key of the job's options in their Secret.
SPEC_KEY = "spec"
# What a runtime env value may hold: no character any shell gives a meaning to.
SHELL_INERT = re.compile(r"[A-Za-z0-9_.:/@+=,-]*")


@dataclass(frozen=True)
class Origin:
    """Who submitted what: labels and annotations on the RayJob, for `kubectl get -l` and audits."""

    git_sha: str
    user: str = ""
    # The corpus as the user named it, before it became the uploaded working_dir.
    corpus: str = ""

    @classmethod
    def here(cls, git_sha: str, *, corpus: str = "") -> Origin:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(git_sha=git_sha, user=user, corpus=corpus)


def label_value(value: str) -> str:
    """A Kubernetes label value: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME.match(name):
        raise RaybakeError(
            f"job name {name!r} cannot name a RayJob: use at most {MAX_NAME} lowercase letters, digits "
            "and '-', starting with a letter and ending with a letter or digit",
            ExitCode.REFUSED,
        )
    return name


def resources(*, cpu: str, memory: str, gpus: int = 0) -> dict[str, dict[str, str]]:
    # Requests equal to limits: the scheduler places a worker only where all of it fits.
    amounts = {"cpu": cpu, "memory": memory}
    if gpus:
        amounts["nvidia.com/gpu"] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def pod_template(
    *,
    container: str,
    image: str,
    settings: Settings,
    env: list[dict],
    res: dict,
    job: str,
    ports: list[dict] | None = None,
    gpu: bool = False,
) -> dict[str, Any]:
    # Each pod its own copies: shared objects would print as YAML anchors and change together.
    main: dict[str, Any] = {
        "name": container,
        "image": image,
        # A digest never changes and kind's node holds the image `kind load` put there: no pulls again.
        "imagePullPolicy": "IfNotPresent",
        "env": copy.deepcopy(env),
        "resources": res,
    }
    if ports:
        main["ports"] = ports
    pod: dict[str, Any] = {"containers": [main]}
    if settings.pvc:
        main["volumeMounts"] = [{"name": "data", "mountPath": settings.pvc_mount}]
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": settings.pvc}}]
    # The job's own label on its pods: what the NetworkPolicy selects, whatever KubeRay adds.
    return {"metadata": {"labels": {JOB_LABEL: job}}, "spec": pods.apply(pod, settings=settings, gpu=gpu)}


def worker_group(*, image: str, settings: Settings, env: list[dict], job: str) -> dict[str, Any]:
    """One worker per GPU when --gpus is given, else cpu_workers CPU-only workers."""
    gpu = settings.gpus > 0
    replicas = settings.gpus if gpu else settings.cpu_workers
    return group(image=image, settings=settings, env=env, job=job, gpu=gpu, replicas=(replicas, replicas, replicas))


def group(
    *, image: str, settings: Settings, env: list[dict], job: str, gpu: bool, replicas: tuple[int, int, int]
) -> dict[str, Any]:
    """A worker group: `gpu` pods of one GPU each, else CPU pods; `replicas` is (now, least, most),
    all equal for a RayJob's fixed cluster, apart for an autoscaling one."""
    start: dict[str, str] = {}
    if not gpu and settings.logical_gpus:
        # Ray then schedules num_gpus=1 tasks on CPU pods: the GPU code path without a GPU (kind e2e).
        start["num-gpus"] = str(settings.logical_gpus)
    if gpu:
        res = resources(cpu=settings.gpu_worker_cpu, memory=settings.gpu_worker_memory, gpus=1)
    else:
        res = resources(cpu=settings.worker_cpu, memory=settings.worker_memory)
    now, least, most = replicas
    return {
        "groupName": "gpu" if gpu else "cpu",
        "replicas": now,
        "minReplicas": least,
        "maxReplicas": most,
        "rayStartParams": start,
        "template": pod_template(
            container="ray-worker", image=image, settings=settings, env=env, res=res, job=job, gpu=gpu
        ),
    }


def head_group(*, image: str, settings: Settings, env: list[dict], job: str) -> dict[str, Any]:
    """The head: it runs the driver and the dashboard; the workers run the model."""
    ports = [
        {"containerPort": 6379, "name": "gcs-server"},
        {"containerPort": RAY_DASHBOARD_PORT, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
    ]
    return {
        # No CPUs for Ray on the head: it runs the driver, the workers run the model.
        "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
        "template": pod_template(
            container="ray-head",
            image=image,
            settings=settings,
            env=env,
            res=resources(cpu=settings.head_cpu, memory=settings.head_memory),
            job=job,
            ports=ports,
        ),
    }


def image_env(image: str) -> list[dict[str, str]]:
    """What every pod is told it runs: the job warns in its log when it runs in another image."""
    return [{"name": "RAYBAKE_EXPECTED_IMAGE", "value": image}]


def token_auth(name: str) -> dict[str, str]:
    """Ray token auth on every cluster raybake makes: KubeRay gives each pod RAY_AUTH_TOKEN from
    this Secret, which raybake creates beside it (token_secret); its operator sends it too."""
    return {"mode": "token", "secretName": token_secret_name(name)}


def lifetime(settings: Settings) -> dict[str, Any]:
    """What stays after the job, as RayJob fields: GPUs are the dearest thing a finished job holds.

    With delete_workers_at_end, KubeRay's deletionRules (RayJobDeletionPolicy, on by default
    since KubeRay 1.5) delete the workers the moment the job ends and the cluster (the head, for
    its logs) ttl_after_finished_s later, on success and failure alike. KubeRay refuses those
    rules beside shutdownAfterJobFinishes, so that is then false. The RayJob itself stays: its
    status is the job's record. Without it, the whole cluster stays ttl_after_finished_s.
    """
    if not settings.delete_workers_at_end or settings.kueue_queue:
        # Kueue admits only a RayJob that gives its cluster (and so its quota) back at the end.
        return {"shutdownAfterJobFinishes": True, "ttlSecondsAfterFinished": settings.ttl_after_finished_s}
    conditions = [{"jobStatus": "SUCCEEDED"}, {"jobStatus": "FAILED"}, {"jobDeploymentStatus": "Failed"}]
    rules = [
        {"condition": {**condition, "ttlSeconds": ttl}, "policy": policy}
        for condition in conditions
        for policy, ttl in (("DeleteWorkers", 0), ("DeleteCluster", settings.ttl_after_finished_s))
    ]
    return {"shutdownAfterJobFinishes": False, "deletionStrategy": {"deletionRules": rules}}


def lifetime_note(manifest: dict[str, Any]) -> str:
    """One line for the dry run: what stays after the job, and for how long."""
    job = manifest["spec"]
    rules = job.get("deletionStrategy", {}).get("deletionRules", [])
    ttl = {rule["policy"]: rule["condition"]["ttlSeconds"] for rule in rules}
    if rules:
        return (
            f"after the job: workers deleted {_after(ttl['DeleteWorkers'])} (their GPUs freed), "
            f"the head {_after(ttl['DeleteCluster'])} (logs until then); the RayJob stays until deleted"
        )
    return (
        f"after the job: the whole cluster, GPU workers included, stays "
        f"{job.get('ttlSecondsAfterFinished', 0)}s; the RayJob stays until deleted"
    )


def _after(seconds: int) -> str:
    return "at once" if not seconds else f"after {seconds}s"


def rayjob(
    spec: JobSpec,
    *,
    image: str,
    ray_version: str,
    settings: Settings,
    origin: Origin,
    runtime_env: dict[str, Any] | None = None,
    interactive: bool = False,
) -> dict[str, Any]:
    """The RayJob. `interactive`: the client submits the job itself (to upload a local corpus)."""
    name = check_name(spec.name)
    if interactive and settings.backoff_limit:
        # KubeRay refuses retries in InteractiveMode: a retry would find the old job id set.
        raise RaybakeError(
            f"backoff_limit {settings.backoff_limit!r} needs a corpus the cluster reads itself "
            "(a URI or cluster: path); an uploaded corpus is submitted once",
            ExitCode.REFUSED,
        )
    if settings.kueue_queue and (interactive or label_value(settings.kueue_queue) != settings.kueue_queue):
        raise RaybakeError(
            f"cannot queue in {settings.kueue_queue!r}: "
            + (
                "a queued RayJob needs a corpus the cluster reads itself (a URI or cluster: path); "
                "an uploaded corpus is submitted by this machine, which would wait for the queue"
                if interactive
                else "a Kueue LocalQueue's name is a label value (letters, digits, '-', '_', '.')"
            ),
            ExitCode.REFUSED,
        )
    env = image_env(image)
    # The driver runs on the head: its options come from the job's Secret, never the entrypoint,
    # which etcd keeps in the RayJob and the operator sends to the head.
    head_env = env if spec.entrypoint else [*env, spec_env(name)]
    job: dict[str, Any] = {
        # InteractiveMode: KubeRay makes the cluster and waits; raybake submits with the upload.
        # HTTPMode: the operator posts the job to the head's dashboard itself, so no submitter
        # container or pod exists: nothing to pull again and nothing outside the restricted Pod
        # Security profile (SidecarMode's container carries no securityContext and takes none).
        "submissionMode": "InteractiveMode" if interactive else SUBMISSION_MODE,
        "entrypoint": spec.command(),
        **lifetime(settings),
        "backoffLimit": settings.backoff_limit,
    }
    if settings.kueue_queue:
        # Kueue unsuspends it when its queue admits it (raybake.kube.kueue).
        job["suspend"] = True
    if settings.pre_running_deadline_s:
        job["preRunningDeadlineSeconds"] = settings.pre_running_deadline_s
    if settings.active_deadline_s:
        job["activeDeadlineSeconds"] = settings.active_deadline_s
    if runtime_env and not interactive:
        job["runtimeEnvYAML"] = yaml.safe_dump(inert(runtime_env), sort_keys=True)
    job["rayClusterSpec"] = {
        "rayVersion": ray_version,
        "authOptions": token_auth(name),
        "headGroupSpec": head_group(image=image, settings=settings, env=head_env, job=name),
        "workerGroupSpecs": [worker_group(image=image, settings=settings, env=env, job=name)],
    }
    labels = {
        "app.kubernetes.io/name": "raybake",
        MANAGED_BY[0]: MANAGED_BY[1],
        "raybake.io/task": label_value(spec.task),
        "raybake.io/user": label_value(origin.user),
        "raybake.io/git-sha": label_value(origin.git_sha),
        kueue.QUEUE_LABEL: settings.kueue_queue or "",
    }
    annotations = {
        "raybake.io/submitted-by": origin.user,
        "raybake.io/git-sha": origin.git_sha,
        "raybake.io/model": urls.redact(spec.model),
        "raybake.io/corpus": urls.redact(origin.corpus or spec.corpus),
        "raybake.io/output": urls.redact(spec.output),
        "raybake.io/image": image,
    }
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "RayJob",
        "metadata": {"name": name, "labels": {k: v for k, v in labels.items() if v}, "annotations": annotations},
        "spec": job,
    }
    with_object_store(job["rayClusterSpec"], settings=settings)
    return manifest


def with_object_store(cluster: dict[str, Any], *, settings: Settings) -> dict[str, Any]:
    """Every container of every pod raybake templates (head and workers) gets the object store:
    Secrets as envFrom, the endpoint variables, the CA bundle's mount.

    The driver runs on the head and the workers read and write the store, so those are all the
    job's readers (in HTTPMode KubeRay adds no submitter container).
    """
    from raybake import objectstore

    container, pod = objectstore.pod_additions(settings)
    for template in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
        for main in template["spec"]["containers"]:
            for key, values in container.items():
                main.setdefault(key, []).extend(copy.deepcopy(values))
        for key, values in pod.items():
            template["spec"].setdefault(key, []).extend(copy.deepcopy(values))
    return cluster


def inert(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """The runtime env, refused if any value could mean something to a shell.

    HTTPMode sends it as JSON, but KubeRay's other modes (K8sJobMode is its default, so a
    `--dry-run` applied by hand with the mode removed runs it) put the runtime env's JSON inside
    double quotes of one bash line, where `$(...)`, backticks and `$VAR` still expand. So nothing
    user-given goes there (the job's options travel in the entrypoint, base64), and this keeps it
    so by construction."""
    for value in _strings(runtime_env):
        if not SHELL_INERT.fullmatch(value):
            raise RaybakeError(
                f"refusing {value!r} in the RayJob's runtime env: KubeRay's submitter would hand it to bash",
                ExitCode.REFUSED,
            )
    return runtime_env


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


def _owned(name: str, job: str) -> dict[str, Any]:
    return {"name": name, "labels": {MANAGED_BY[0]: MANAGED_BY[1], JOB_LABEL: job}}


def token_secret_name(job: str) -> str:
    return f"{job}-ray-token"


def token_secret(job: str, token: str) -> dict[str, Any]:
    """The Secret the job's cluster reads its Ray token from (KubeRay wants the key `auth_token`)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _owned(token_secret_name(job), job),
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def spec_secret_name(job: str) -> str:
    return f"{job}-spec"


def spec_env(job: str) -> dict[str, Any]:
    """The head's variable that holds the job's options, read from the job's own Secret."""
    return {"name": SPEC_VARIABLE, "valueFrom": {"secretKeyRef": {"name": spec_secret_name(job), "key": SPEC_KEY}}}


def spec_secret(job: str, spec: JobSpec) -> dict[str, Any]:
    """The Secret that carries the job's options to its driver: a presigned URL's signature or a
    `user:pass@` in them is readable only where the namespace's Secrets are."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _owned(spec_secret_name(job), job),
        "type": "Opaque",
        "stringData": {SPEC_KEY: spec.encoded()},
    }


def network_policy(job: str) -> dict[str, Any]:
    """Only the job's own pods (workers, head) reach its head.

    A port-forward (the client's path, through the kubelet) is not pod traffic and still works;
    other pods of the namespace, and anything outside it, are cut off from the head's ports."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _owned(f"{job}-head", job),
        "spec": {
            "podSelector": {"matchLabels": {JOB_LABEL: job, NODE_TYPE_LABEL: "head"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {JOB_LABEL: job}}},
                        {"podSelector": {"matchLabels": {"ray.io/originated-from-cr-name": job}}},
                    ]
                }
            ],
        },
    }


def redacted(value: Any, key: str = "") -> Any:
    """A copy with secret-looking values replaced: environment entries, keys, embedded runtime envs."""
    if key == "stringData" and isinstance(value, dict):
        return dict.fromkeys(value, REDACTED)
    if isinstance(value, dict):
        if SECRET.search(str(value.get("name", ""))) and "value" in value:
            return {**value, "value": REDACTED}
        return {k: redacted(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, key) for v in value]
    if isinstance(value, str) and key == "entrypoint":
        return shown_entrypoint(value)
    if isinstance(value, str) and key == "runtimeEnvYAML":
        return yaml.safe_dump(redacted(yaml.safe_load(value)), sort_keys=True)
    # A Secret's name (authOptions.secretName) says where a secret is, not what it is; a boolean
    # is a switch (automountServiceAccountToken), never a secret.
    if SECRET.search(key) and not key.endswith("Name") and value not in (None, "") and not isinstance(value, bool):
        return REDACTED
    return value


def to_yaml(*documents: dict[str, Any]) -> str:
    """Manifests as `--dry-run` prints them: secrets redacted, keys in the order they were built."""
    return yaml.dump_all(
        [redacted(d) for d in documents], Dumper=_PlainDumper, sort_keys=False, default_flow_style=False
    )


class _PlainDumper(yaml.SafeDumper):
    """Never `&id001` anchors: a reader of the dry run sees every value where it applies."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
