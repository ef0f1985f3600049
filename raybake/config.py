"""One typed settings object: defaults < invoke.yaml < INVOKE_RAYBAKE_* env < task flags.

The defaults are the fields of Settings' groups below, their one home, each with what it is.
This module layers invoke.yaml's values, the environment and the flags over them, checks
names, types and values (Settings.__post_init__, the one place), and gives the rest of the
client one object to read.

Not pydantic-settings: its environment source maps a nested group to a delimited variable
(INVOKE_RAYBAKE_KUBE__GPUS), where the documented variables are flat (INVOKE_RAYBAKE_GPUS),
and it reads a comma-separated list as JSON; keeping both would mean an alias per field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, get_origin, get_type_hints

from raybake.backends import BACKENDS
from raybake.errors import ExitCode, RaybakeError

# The job image's variants: `invoke build --variant`, and which one the rayjob backend runs.
VARIANTS = ("cuda", "cpu")
# Ray's own dashboard and job submission port: the embedded head, the head containers and KubeRay's
# heads all serve it.
RAY_DASHBOARD_PORT = 8265


def setting(default: Any, doc: str) -> Any:
    """A setting's default and what it is: docs/configuration.md's row (`invoke dev.docs`)."""
    return field(default=default, metadata={"doc": doc})


# The groups below are Settings' parts: one concern each, one row each in docs/configuration.md.
@dataclass(frozen=True)
class LocalSettings:
    """The embedded local Ray (`invoke submit` with no cluster) and what raybake keeps here."""

    local_dashboard_port: int = setting(
        RAY_DASHBOARD_PORT,
        "The embedded local Ray's dashboard port on 127.0.0.1; it is started on demand and reused.",
    )
    local_ray_port: int = setting(6379, "The embedded local Ray's GCS port.")
    local_num_cpus: int | None = setting(None, "CPUs the embedded local Ray offers (default: all of this machine's).")
    local_keep_warm_s: int = setting(
        300,
        "Seconds the embedded local Ray's workers stay, model loaded, after a job for the next job of the "
        "same model and settings (0: they end with each job). `invoke down` ends them with the Ray.",
    )
    results_dir: str = setting("results", "Where a local job's outputs go without --output: <results_dir>/<job id>.")
    state_file: str = setting(
        ".raybake/state.json",
        "What raybake remembers between commands (built and pushed images, the cluster it started).",
    )


@dataclass(frozen=True)
class ClusterSettings:
    """Which cluster a job runs on and how raybake reaches it (every backend)."""

    backend: str = setting(
        "local",
        "Where jobs run: a backend that raybake/backends.py names (docs/clusters.md compares them).",
    )
    address: str | None = setting(None, "Job submission URL of an existing cluster (the address backend).")
    cluster: str | None = setting(
        None,
        "An existing RayCluster to reach through a port-forward (the address backend without a URL).",
    )
    token_env: str = setting("RAY_AUTH_TOKEN", "The environment variable that holds the Ray auth token.")
    token_file: str | None = setting(None, "A file that holds the Ray auth token, when the variable is not set.")
    verify_tls: bool = setting(True, "Verify the cluster's TLS certificate (off: a network you trust only).")
    insecure_http: bool = setting(
        False,
        "Send the token over plain http to a host that is not this machine (a network you trust).",
    )
    connect_timeout_s: float = setting(10.0, "How long to wait for a cluster to answer before calling it unreachable.")
    ca_bundle: str | None = setting(
        None,
        "A CA bundle to verify the cluster's TLS certificate with (instead of the system's).",
    )
    image: str | None = setting(None, "The image every cluster pod runs; default: the last one `invoke push` recorded.")
    allow_image_mismatch: bool = setting(
        False,
        "Submit although the cluster runs another Ray version or image than this checkout built.",
    )
    ship_job: bool = setting(
        False,
        "Send job/ from this checkout as a py_module: for clusters that do not run the raybake image.",
    )
    expected_image: str | None = setting(
        None,
        "The image the cluster runs, when known: jobs warn loudly if they find another one.",
    )


@dataclass(frozen=True)
class KubeSettings:
    """Kubernetes: a RayJob's pods (--backend rayjob), a team's RayCluster (`invoke cluster`), kind."""

    kube_context: str | None = setting(
        None,
        "The kubeconfig context (default: the current one, as `oc login` sets it).",
    )
    namespace: str | None = setting(None, "The Kubernetes namespace (default: the context's).")
    network_policy: bool = setting(False, "rayjob: a NetworkPolicy that lets only the job's own pods reach its head.")
    gpus: int = setting(0, "The RayJob's GPUs in total, one worker pod each; 0: CPU workers.")
    cpu_workers: int = setting(1, "The RayJob's CPU-only worker pods when gpus is 0.")
    logical_gpus: int = setting(
        0,
        "Logical GPUs each CPU worker advertises to Ray (rayStartParams num-gpus): GPU code paths on CPU pods.",
    )
    head_cpu: str = setting("1", "CPU of the RayJob's head pod.")
    head_memory: str = setting("4Gi", "Memory of the RayJob's head pod.")
    worker_cpu: str = setting("2", "CPU of each worker pod.")
    worker_memory: str = setting("8Gi", "Memory of each worker pod.")
    ttl_after_finished_s: int = setting(600, "Seconds the RayJob stays after it ended (its cluster goes at once).")
    pre_running_deadline_s: int | None = setting(1800, "Seconds a RayJob may wait for its pods before it fails.")
    active_deadline_s: int | None = setting(None, "Seconds a RayJob may run in all.")
    backoff_limit: int = setting(0, "Times KubeRay retries a failed RayJob.")
    pvc: str | None = setting(
        None,
        "A PersistentVolumeClaim mounted into every pod: the home of `cluster:` corpus and output paths.",
    )
    pvc_mount: str = setting("/mnt/data", "Where the PVC is mounted in every pod.")
    gpu_worker_cpu: str = setting(
        "8",
        "CPU of each GPU worker pod (one GPU each): tokenizing for a fast GPU takes several cores.",
    )
    gpu_worker_memory: str = setting(
        "32Gi",
        "Memory of each GPU worker pod; the limit also caps /dev/shm, where Ray's object store lives.",
    )
    node_selector: str = setting("", 'Where pods go: "key=value,..." node labels (docs/clusters.md).')
    tolerations: str = setting("", 'Taints the pods tolerate: "key[=value]:Effect,...".')
    gpu_toleration: bool = setting(
        True,
        "GPU workers tolerate the nvidia.com/gpu:NoSchedule taint GPU nodes usually carry.",
    )
    image_pull_secrets: str = setting("", 'Secrets the pods pull the image with: "name,...".')
    service_account: str | None = setting(None, "The service account every pod runs as.")
    priority_class: str | None = setting(None, "The pods' PriorityClass.")
    hf_cache_pvc: str | None = setting(
        None,
        "The Hugging Face cache (HF_HOME) of every pod: this PersistentVolumeClaim, else an emptyDir.",
    )
    delete_workers_at_end: bool = setting(
        True,
        "Workers are deleted as soon as the job ends (KubeRay's deletionRules); the head stays "
        "ttl_after_finished_s for logs. False: the whole cluster stays that long (shutdownAfterJobFinishes).",
    )
    kueue_queue: str | None = setting(
        None,
        "rayjob: the Kueue LocalQueue the RayJob waits in (label kueue.x-k8s.io/queue-name); it is created "
        "suspended and Kueue starts it when the queue admits it.",
    )
    max_gpus: int = setting(
        4,
        "`invoke cluster`: the most GPU workers (one GPU each) the autoscaler may add to the team's "
        "RayCluster; GPU workers start at min_gpus and go back to it when idle.",
    )
    min_gpus: int = setting(
        0,
        "`invoke cluster`: the GPU workers that stay even when idle (0: GPUs only while jobs run).",
    )
    max_cpu_workers: int = setting(
        0,
        "`invoke cluster`: the most CPU-only workers (worker_cpu, worker_memory) in a group of their own; 0: "
        "no CPU group.",
    )
    idle_timeout_s: int = setting(
        600,
        "`invoke cluster`: seconds a worker stays idle before the autoscaler removes it.",
    )
    kind_cluster: str = setting("raybake", "The name of the local kind cluster `invoke kind.up` makes.")


@dataclass(frozen=True)
class ImageSettings:
    """The job image: how `invoke build` makes it and where `invoke push` sends it."""

    image_name: str = setting("raybake", "The job image's name, under the registry.")
    registry: str | None = setting(
        None,
        "Registry and organisation the image is named and pushed under, e.g. REGISTRY/ORG.",
    )
    registry_user_env: str = setting("RAYBAKE_REGISTRY_USER", "The environment variable that holds the registry user.")
    registry_password_env: str = setting(
        "RAYBAKE_REGISTRY_PASSWORD",
        "The environment variable that holds the registry password or token.",
    )
    variant: str = setting("cuda", "Which image `invoke build`, `push` and the rayjob backend mean: cuda or cpu.")
    base_image_cuda: str = setting(
        "rayproject/ray:{ray}-py311-cu128",
        "The cuda variant's base image; {ray} is the Ray version of requirements.txt.",
    )
    base_image_cpu: str = setting("rayproject/ray:{ray}-py311-cpu", "The cpu variant's base image.")
    torch_index_cuda: str = setting(
        "",
        'The pip index torch comes from in the cuda variant ("": PyPI); "{cuda}" is filled from the base '
        "image's tag (-cu128 -> cu128).",
    )
    torch_index_cpu: str = setting("", 'The pip index torch comes from in the cpu variant ("": PyPI).')
    wheelhouse_port: int = setting(
        8479,
        "The loopback port `invoke build` serves docker/wheelhouse/ on; fixed, since the URL is part of the "
        "torch layer's cache key.",
    )


@dataclass(frozen=True)
class JobSettings:
    """What a job reads and writes on a real cluster: uploads, outputs, the object store."""

    upload_limit_mib: int = setting(
        100,
        "Local corpora up to this size travel with a job to a real cluster; bigger ones are refused.",
    )
    remote_output: str | None = setting(
        None,
        "Where jobs on a real cluster write when --output is not given (a URI or a `cluster:` path).",
    )
    env_from_secret: tuple[str, ...] = setting(
        (),
        "Secrets every RayJob container gets as its environment (envFrom: AWS_ACCESS_KEY_ID ...), by name; "
        "comma-separated in invoke.yaml or the environment (raybake/objectstore.py).",
    )
    s3_endpoint: str | None = setting(None, "An S3-compatible store's endpoint URL, given to the job on every backend.")
    s3_ca_bundle: str | None = setting(
        None,
        "The store's CA bundle: configmap:NAME/KEY, secret:NAME/KEY, or a path where the job runs.",
    )
    s3_path_style: bool = setting(
        False,
        "Path-style addressing (https://endpoint/bucket/key), as MinIO and NooBaa often need.",
    )


@dataclass(frozen=True)
class ContainerClusterSettings:
    """The cluster of containers `invoke up` starts on the local Docker engine."""

    cluster_dashboard_port: int = setting(
        8266,
        "The `invoke up` cluster's dashboard port on 127.0.0.1, beside the embedded Ray's.",
    )
    cluster_name: str = setting("raybake", "The `invoke up` cluster's name (its containers' prefix).")
    cluster_cpus_per_node: int = setting(1, "CPUs each `invoke up` container offers Ray.")


@dataclass(frozen=True)
class Settings(LocalSettings, ClusterSettings, KubeSettings, ImageSettings, JobSettings, ContainerClusterSettings):
    """Every setting, each group's by its own name (`settings.gpus`), so that invoke.yaml keys and
    INVOKE_RAYBAKE_* variables stay the flat names docs/configuration.md lists by group.

    Checked here, once, when made: whatever reads a Settings reads valid values."""

    def __post_init__(self) -> None:
        def refuse(message: str) -> None:
            raise RaybakeError(message, ExitCode.REFUSED)

        if self.backend not in BACKENDS:
            refuse(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        known_variant(self.variant)
        for name, least in (("gpus", 0), ("cpu_workers", 1), ("logical_gpus", 0)):
            if getattr(self, name) < least:
                refuse(f"{name} must be at least {least}, got {getattr(self, name)!r}")
        if not 0 <= self.min_gpus <= self.max_gpus or self.max_gpus + self.max_cpu_workers < 1:
            refuse(
                f"a cluster needs 0 <= min_gpus <= max_gpus and at least one worker: got min_gpus "
                f"{self.min_gpus!r}, max_gpus {self.max_gpus!r}, max_cpu_workers {self.max_cpu_workers!r}"
            )


def known_variant(variant: str) -> str:
    """`variant`, if it is one of the image's: `invoke build` names one beside the setting."""
    if variant not in VARIANTS:
        raise RaybakeError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}", ExitCode.REFUSED)
    return variant


def _coerce(name: str, kind: Any, value: Any) -> Any:
    if value is None:
        return None
    if get_origin(kind) is tuple:
        base: Any = tuple
    else:
        base = next((t for t in getattr(kind, "__args__", (kind,)) if t is not type(None)), kind)
    if isinstance(value, base):
        return value
    try:
        if base is tuple:
            # A list in invoke.yaml, or comma-separated in an INVOKE_RAYBAKE_* variable.
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(v).strip() for v in items if str(v).strip())
        if base is bool:
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return base(value)
    except (TypeError, ValueError):
        raise RaybakeError(f"setting {name!r} must be {base.__name__}, got {value!r}", ExitCode.REFUSED) from None


ENV_PREFIX = "INVOKE_RAYBAKE_"


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings INVOKE_RAYBAKE_<NAME> variables give, by setting name, as the strings they are.

    Read here rather than left to invoke, which maps a variable only onto a key invoke.yaml
    already has and reads "false" as true; here every setting has its variable and one reading.
    """
    return {key[len(ENV_PREFIX) :].lower(): value for key, value in environ.items() if key.startswith(ENV_PREFIX)}


def load(
    config: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None, **flags: Any
) -> Settings:
    """Settings from invoke.yaml's `raybake` section, the INVOKE_RAYBAKE_* variables of `environ`,
    and the flags given on the command line, each over the one before.

    A flag left at None means "not given" and keeps the configured value.
    """
    hints = get_type_hints(Settings)
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    given = {k: v for k, v in flags.items() if v is not None}
    for source in (dict(config or {}), from_environment(environ or {}), given):
        unknown = sorted(set(source) - known)
        if unknown:
            raise RaybakeError(f"unknown raybake setting(s): {', '.join(unknown)}", ExitCode.REFUSED)
        values.update({k: _coerce(k, hints[k], v) for k, v in source.items()})
    return dataclasses.replace(Settings(), **values)
