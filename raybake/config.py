"""One typed settings object: defaults < invoke.yaml < INVOKE_RAYBAKE_* env < task flags.

Invoke already merges the first three into `c.config.raybake`; this module adds the flags,
checks names and types, and gives the rest of the client one object to read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

from raybake.errors import ExitCode, RaybakeError

BACKENDS = ("local", "address", "rayjob")
# Ray's own dashboard and job submission port: the embedded head, the head containers and KubeRay's
# heads all serve it.
RAY_DASHBOARD_PORT = 8265


@dataclass(frozen=True)
class Settings:
    backend: str = "local"
    # Job submission URL of an existing cluster (the address backend).
    address: str | None = None
    # The embedded local Ray: started on demand on loopback, reused while it runs.
    local_dashboard_port: int = RAY_DASHBOARD_PORT
    local_ray_port: int = 6379
    local_num_cpus: int | None = None
    results_dir: str = "results"
    # Ray token auth: the token's environment variable, or a file holding it.
    token_env: str = "RAY_AUTH_TOKEN"
    token_file: str | None = None
    verify_tls: bool = True
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

    # Kubernetes: kubeconfig context and namespace (default: the current context's, as `oc login` sets).
    kube_context: str | None = None
    namespace: str | None = None
    # An existing RayCluster to reach through a port-forward (the address backend without a URL).
    cluster: str | None = None

    # The RayJob's cluster: GPUs in total (one worker each), else cpu_workers CPU-only workers.
    gpus: int = 0
    cpu_workers: int = 1
    # Logical GPUs each CPU worker advertises to Ray (rayStartParams num-gpus): GPU code paths on CPU pods.
    logical_gpus: int = 0
    head_cpu: str = "1"
    head_memory: str = "4Gi"
    worker_cpu: str = "2"
    worker_memory: str = "8Gi"
    # Bounds on the RayJob: pods gone this long after the end; deadlines before and after start.
    ttl_after_finished_s: int = 600
    pre_running_deadline_s: int | None = 1800
    active_deadline_s: int | None = None
    backoff_limit: int = 0
    # A PersistentVolumeClaim mounted into every pod: the home of `cluster:` corpus and output paths.
    pvc: str | None = None
    pvc_mount: str = "/mnt/data"

    # Corpus and output on a real cluster: local corpora up to this size travel with the job.
    upload_limit_mib: int = 100
    # Where jobs on a real cluster write when --output is not given (a URI or a `cluster:` path).
    remote_output: str | None = None

    # `invoke kind.up`: the local kind cluster's name.
    kind_cluster: str = "raybake"

    # The job image (raybake/image/build.py). Base images take the Ray version from requirements.txt
    # as {ray}; the torch index must match the cluster's CUDA driver ("" means PyPI's default).
    image_name: str = "raybake"
    # Registry and organisation the image is named and pushed under, e.g. REGISTRY/ORG.
    registry: str | None = None
    registry_user_env: str = "RAYBAKE_REGISTRY_USER"
    registry_password_env: str = "RAYBAKE_REGISTRY_PASSWORD"
    variant: str = "cuda"
    base_image_cuda: str = "rayproject/ray:{ray}-py311-cu128"
    base_image_cpu: str = "rayproject/ray:{ray}-py311-cpu"
    torch_index_cuda: str = ""
    torch_index_cpu: str = ""
    # The image the cluster runs, when known: jobs warn loudly if they find another one.
    expected_image: str | None = None
    # The local Docker cluster (raybake/clusters/localcluster.py); its dashboard is on 127.0.0.1 only, on
    # a port of its own so it runs beside the embedded local Ray.
    cluster_dashboard_port: int = 8266
    cluster_name: str = "raybake"
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
    base = next((t for t in getattr(kind, "__args__", (kind,)) if t is not type(None)), kind)
    if isinstance(value, base):
        return value
    try:
        if base is bool:
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return base(value)
    except (TypeError, ValueError):
        raise RaybakeError(f"setting {name!r} must be {base.__name__}, got {value!r}", ExitCode.REFUSED) from None


def load(config: Mapping[str, Any] | None = None, **flags: Any) -> Settings:
    """Settings from invoke's merged `raybake` config plus flags given on the command line.

    A flag left at None means "not given" and keeps the configured value.
    """
    hints = get_type_hints(Settings)
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    for source in (dict(config or {}), {k: v for k, v in flags.items() if v is not None}):
        unknown = sorted(set(source) - known)
        if unknown:
            raise RaybakeError(f"unknown raybake setting(s): {', '.join(unknown)}", ExitCode.REFUSED)
        values.update({k: _coerce(k, hints[k], v) for k, v in source.items()})
    return dataclasses.replace(Settings(), **values)
