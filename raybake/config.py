"""One typed settings object: defaults < invoke.yaml < INVOKE_RAYBAKE_* env < task flags.

The defaults are the Settings fields below, their one home. This module layers invoke.yaml's
values, the environment and the flags over them, checks names and types, and gives the rest of
the client one object to read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, get_origin, get_type_hints

from raybake.backends import BACKENDS
from raybake.errors import ExitCode, RaybakeError

# Ray's own dashboard and job submission port: the embedded head, the head containers and KubeRay's
# heads all serve it.
RAY_DASHBOARD_PORT = 8265


@dataclass(frozen=True)
class Settings:
    # Where jobs run: a backend that raybake/backends.py names (docs/clusters.md compares them).
    backend: str = "local"
    # Job submission URL of an existing cluster (the address backend).
    address: str | None = None
    # The embedded local Ray's dashboard port on 127.0.0.1; it is started on demand and reused.
    local_dashboard_port: int = RAY_DASHBOARD_PORT
    # The embedded local Ray's GCS port.
    local_ray_port: int = 6379
    # CPUs the embedded local Ray offers (default: all of this machine's).
    local_num_cpus: int | None = None
    # Seconds the embedded local Ray's workers stay, model loaded, after a job for the next job of the
    # same model and settings (0: they end with each job). `invoke down` ends them with the Ray.
    local_keep_warm_s: int = 300
    # Where a local job's outputs go without --output: <results_dir>/<job id>.
    results_dir: str = "results"
    # The environment variable that holds the Ray auth token.
    token_env: str = "RAY_AUTH_TOKEN"
    # A file that holds the Ray auth token, when the variable is not set.
    token_file: str | None = None
    # Verify the cluster's TLS certificate (off: a network you trust only).
    verify_tls: bool = True
    # Send the token over plain http to a host that is not this machine (a network you trust).
    insecure_http: bool = False
    # rayjob: a NetworkPolicy that lets only the job's own pods reach its head.
    network_policy: bool = False
    # How long to wait for a cluster to answer before calling it unreachable.
    connect_timeout_s: float = 10.0
    # A CA bundle to verify the cluster's TLS certificate with (instead of the system's).
    ca_bundle: str | None = None

    # The image every cluster pod runs; default: the last one `invoke push` recorded.
    image: str | None = None
    # Submit although the cluster runs another Ray version or image than this checkout built.
    allow_image_mismatch: bool = False
    # Send job/ from this checkout as a py_module: for clusters that do not run the raybake image.
    ship_job: bool = False

    # The kubeconfig context (default: the current one, as `oc login` sets it).
    kube_context: str | None = None
    # The Kubernetes namespace (default: the context's).
    namespace: str | None = None
    # An existing RayCluster to reach through a port-forward (the address backend without a URL).
    cluster: str | None = None

    # The RayJob's GPUs in total, one worker pod each; 0: CPU workers.
    gpus: int = 0
    # The RayJob's CPU-only worker pods when gpus is 0.
    cpu_workers: int = 1
    # Logical GPUs each CPU worker advertises to Ray (rayStartParams num-gpus): GPU code paths on CPU pods.
    logical_gpus: int = 0
    # CPU of the RayJob's head pod.
    head_cpu: str = "1"
    # Memory of the RayJob's head pod.
    head_memory: str = "4Gi"
    # CPU of each worker pod.
    worker_cpu: str = "2"
    # Memory of each worker pod.
    worker_memory: str = "8Gi"
    # Seconds the RayJob stays after it ended (its cluster goes at once).
    ttl_after_finished_s: int = 600
    # Seconds a RayJob may wait for its pods before it fails.
    pre_running_deadline_s: int | None = 1800
    # Seconds a RayJob may run in all.
    active_deadline_s: int | None = None
    # Times KubeRay retries a failed RayJob.
    backoff_limit: int = 0
    # A PersistentVolumeClaim mounted into every pod: the home of `cluster:` corpus and output paths.
    pvc: str | None = None
    # Where the PVC is mounted in every pod.
    pvc_mount: str = "/mnt/data"

    # CPU of each GPU worker pod (one GPU each): tokenizing for a fast GPU takes several cores.
    gpu_worker_cpu: str = "8"
    # Memory of each GPU worker pod; the limit also caps /dev/shm, where Ray's object store lives.
    gpu_worker_memory: str = "32Gi"
    # Where pods go: "key=value,..." node labels (raybake/placement.py, docs/clusters.md).
    node_selector: str = ""
    # Taints the pods tolerate: "key[=value]:Effect,...".
    tolerations: str = ""
    # GPU workers tolerate the nvidia.com/gpu:NoSchedule taint GPU nodes usually carry.
    gpu_toleration: bool = True
    # Secrets the pods pull the image with: "name,...".
    image_pull_secrets: str = ""
    # The service account every pod runs as.
    service_account: str | None = None
    # The pods' PriorityClass.
    priority_class: str | None = None
    # The Hugging Face cache (HF_HOME) of every pod: this PersistentVolumeClaim, else an emptyDir.
    hf_cache_pvc: str | None = None
    # Workers are deleted as soon as the job ends (KubeRay's deletionRules); the head stays
    # ttl_after_finished_s for logs. False: the whole cluster stays that long (shutdownAfterJobFinishes).
    delete_workers_at_end: bool = True

    # rayjob: the Kueue LocalQueue the RayJob waits in (label kueue.x-k8s.io/queue-name); it is
    # created suspended and Kueue starts it when the queue admits it.
    kueue_queue: str | None = None

    # `invoke cluster`: the most GPU workers (one GPU each) the autoscaler may add to the team's
    # RayCluster; GPU workers start at min_gpus and go back to it when idle.
    max_gpus: int = 4
    # `invoke cluster`: the GPU workers that stay even when idle (0: GPUs only while jobs run).
    min_gpus: int = 0
    # `invoke cluster`: the most CPU-only workers (worker_cpu, worker_memory) in a group of their
    # own; 0: no CPU group.
    max_cpu_workers: int = 0
    # `invoke cluster`: seconds a worker stays idle before the autoscaler removes it.
    idle_timeout_s: int = 600

    # Local corpora up to this size travel with a job to a real cluster; bigger ones are refused.
    upload_limit_mib: int = 100
    # Where jobs on a real cluster write when --output is not given (a URI or a `cluster:` path).
    remote_output: str | None = None

    # Secrets every RayJob container gets as its environment (envFrom: AWS_ACCESS_KEY_ID ...),
    # by name; comma-separated in invoke.yaml or the environment (raybake/objectstore.py).
    env_from_secret: tuple[str, ...] = ()
    # An S3-compatible store's endpoint URL, given to the job on every backend.
    s3_endpoint: str | None = None
    # The store's CA bundle: configmap:NAME/KEY, secret:NAME/KEY, or a path where the job runs.
    s3_ca_bundle: str | None = None
    # Path-style addressing (https://endpoint/bucket/key), as MinIO and NooBaa often need.
    s3_path_style: bool = False

    # The name of the local kind cluster `invoke kind.up` makes.
    kind_cluster: str = "raybake"

    # The job image's name, under the registry.
    image_name: str = "raybake"
    # Registry and organisation the image is named and pushed under, e.g. REGISTRY/ORG.
    registry: str | None = None
    # The environment variable that holds the registry user.
    registry_user_env: str = "RAYBAKE_REGISTRY_USER"
    # The environment variable that holds the registry password or token.
    registry_password_env: str = "RAYBAKE_REGISTRY_PASSWORD"
    # Which image `invoke build`, `push` and the rayjob backend mean: cuda or cpu.
    variant: str = "cuda"
    # The cuda variant's base image; {ray} is the Ray version of requirements.txt.
    base_image_cuda: str = "rayproject/ray:{ray}-py311-cu128"
    # The cpu variant's base image.
    base_image_cpu: str = "rayproject/ray:{ray}-py311-cpu"
    # The pip index torch comes from in the cuda variant ("": PyPI); "{cuda}" is filled from the base
    # image's tag (-cu128 -> cu128).
    torch_index_cuda: str = ""
    # The pip index torch comes from in the cpu variant ("": PyPI).
    torch_index_cpu: str = ""
    # The loopback port `invoke build` serves docker/wheelhouse/ on; fixed, since the URL is part
    # of the torch layer's cache key.
    wheelhouse_port: int = 8479
    # The image the cluster runs, when known: jobs warn loudly if they find another one.
    expected_image: str | None = None
    # The `invoke up` cluster's dashboard port on 127.0.0.1, beside the embedded Ray's.
    cluster_dashboard_port: int = 8266
    # The `invoke up` cluster's name (its containers' prefix).
    cluster_name: str = "raybake"
    # CPUs each `invoke up` container offers Ray.
    cluster_cpus_per_node: int = 1
    # What raybake remembers between commands (built and pushed images, the cluster it started).
    state_file: str = ".raybake/state.json"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise RaybakeError(
                f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}", ExitCode.REFUSED
            )


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
