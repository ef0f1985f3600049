"""What every task module shares: the flags that set a setting, declared once; the one task
decorator, through which every error reaches the user; and the settings the flags give.

Every setting's default is in raybake/config.py (Settings); invoke.yaml (or ~/.invoke.yaml)
overrides them, an INVOKE_RAYBAKE_<NAME> variable overrides that (for every setting: the
client reads them, see config.load), and a task's flags override all of those.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import invoke
from invoke import Context, Exit

from raybake import config
from raybake.backends import BACKENDS
from raybake.errors import RaybakeError

if TYPE_CHECKING:
    from raybake.clusters import Backend


@dataclass(frozen=True)
class Flag:
    """A flag that sets one setting: `--<name>` on every task that declares it, with one help text.

    `switch`: an on/off flag (default off) that sets `value` when given and leaves the setting
    alone when not; `many`: repeatable, the setting gets a tuple."""

    name: str
    help: str
    setting: str = ""
    switch: bool = False
    value: Any = True
    many: bool = False

    @property
    def dest(self) -> str:
        return self.setting or self.name

    @property
    def parameter(self) -> inspect.Parameter:
        default = False if self.switch else None
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=default)

    def override(self, given: Any) -> Any:
        """The setting's value for what was typed; None: not given, the configured one stays."""
        if self.switch:
            return self.value if given else None
        if self.many:
            return tuple(given or ()) or None
        return given


def flags(*names: str, of: Iterable[Flag]) -> tuple[Flag, ...]:
    """Those of `of` called `names`, in that order (a task that takes some of a group)."""
    by_name = {f.name: f for f in of}
    return tuple(by_name[n] for n in names)


def renamed(group: Iterable[Flag], **helps: str) -> tuple[Flag, ...]:
    """`group` with the help texts of some flags replaced (the same setting, said for this task)."""
    return tuple(Flag(**{**vars(f), "help": helps.get(f.name, f.help)}) for f in group)


# Picking and reaching a cluster: every job task takes these.
CLUSTER = (
    Flag("backend", f"{' | '.join(BACKENDS)} (default: {config.Settings.backend})"),
    Flag("address", "job submission URL of an existing cluster (implies --backend address)"),
    Flag("cluster", "name of an existing RayCluster, reached by a port-forward to its head service (implies address)"),
    Flag("namespace", "Kubernetes namespace (default: the current context's, as `oc login` sets it)"),
)
# Connection details a submit may name; the other tasks read them from invoke.yaml or INVOKE_RAYBAKE_*.
CONNECT = (
    Flag("kube_context", "kubeconfig context (default: the current one; in a pod, its service account)"),
    Flag("ca_bundle", "CA bundle file to verify the cluster's TLS certificate with"),
    Flag("insecure", "skip TLS certificate verification (a network you trust only)", "verify_tls", True, False),
    Flag("token_file", "file holding the Ray auth token (default: $RAY_AUTH_TOKEN)"),
    Flag(
        "insecure_http",
        "send the Ray token over plain http to a host other than this machine (a network you trust)",
        switch=True,
    ),
)
# Where a RayJob's pods go, what they get and pull with (docs/clusters.md); a team cluster's pods
# take the same ones (`invoke cluster`).
PLACEMENT = (
    Flag("gpu_worker_cpu", "rayjob: CPU of each GPU worker pod, one GPU each (default: 8, to tokenize for it)"),
    Flag(
        "gpu_worker_memory",
        "rayjob: memory of each GPU worker pod; also caps /dev/shm, the object store (default: 32Gi)",
    ),
    Flag("node_selector", "rayjob: key=value[,key=value] every pod's node must carry"),
    Flag(
        "tolerations",
        "rayjob: key[=value]:Effect[,...] taints every pod tolerates (GPU workers also "
        "tolerate nvidia.com/gpu:NoSchedule)",
    ),
    Flag("image_pull_secrets", "rayjob: Secret name[,name] to pull the image with (a private registry)"),
    Flag("service_account", "rayjob: ServiceAccount the pods run as"),
    Flag("priority_class", "rayjob: PriorityClass of the pods"),
    Flag("hf_cache_pvc", "rayjob: PersistentVolumeClaim for the Hugging Face cache (HF_HOME); default: an emptyDir"),
)
# Object storage (docs/inputs-outputs.md): where the store is; credentials never pass here.
STORE = (
    Flag(
        "env_from_secret",
        "rayjob: a Secret whose keys become every pod's environment (AWS_ACCESS_KEY_ID ...); repeatable",
        many=True,
    ),
    Flag("s3_endpoint", "S3-compatible store's URL, e.g. https://s3.openshift-storage.svc (AWS_ENDPOINT_URL_S3)"),
    Flag(
        "s3_ca_bundle", "CA of the store: configmap:NAME/KEY or secret:NAME/KEY (rayjob), or a path where the job runs"
    ),
    Flag(
        "s3_path_style",
        "address buckets as ENDPOINT/BUCKET (MinIO, NooBaa, Ceph) instead of BUCKET.ENDPOINT",
        switch=True,
    ),
)
IMAGE = Flag("image", "image the cluster's pods run (default: the last `invoke push`)")
NETWORK_POLICY = Flag(
    "network_policy", "rayjob: a NetworkPolicy letting only the job's own pods reach its head", switch=True
)
VARIANT = Flag("variant", f"{' or '.join(config.VARIANTS)} (default: {config.Settings.variant})")


def task(
    *groups: Iterable[Flag], help: Mapping[str, str] | None = None, **options: Any
) -> Callable[[Callable[..., Any]], invoke.Task]:
    """invoke's @task, with the flags of `groups` added to the task's own and handed to its body
    as setting overrides (`**overrides`: setting name -> value or None); and the one error path:
    a RaybakeError becomes one line on stderr and its exit code, never a traceback."""
    declared = tuple(f for group in groups for f in group)

    def make(body: Callable[..., Any]) -> invoke.Task:
        signature = inspect.signature(body)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]

        @functools.wraps(body)
        def run(c: Context, *args: Any, **kwargs: Any) -> Any:
            overrides = {f.dest: f.override(kwargs.pop(f.name, None)) for f in declared}
            try:
                return body(c, *args, **kwargs, **overrides)
            except RaybakeError as exc:
                raise Exit(f"raybake: {exc}", code=exc.code) from None

        run.__signature__ = signature.replace(parameters=[*own, *(f.parameter for f in declared)])  # type: ignore[attr-defined]
        helps = {f.name.replace("_", "-"): f.help for f in declared} | dict(help or {})
        iterable = [*options.pop("iterable", ()), *(f.name for f in declared if f.many)]
        made = invoke.task(run, help=helps, iterable=iterable, **options)
        assert isinstance(made, invoke.Task)
        made.setting_flags = declared  # type: ignore[attr-defined]  # read by `invoke dev.docs`
        return made

    return make


def settings(c: Context, **overrides: Any) -> config.Settings:
    return config.load(c.config.get("raybake"), environ=os.environ, **overrides)


def backend(c: Context, **overrides: Any) -> Backend:
    """The backend the flags choose; an --address or --cluster alone means the address backend."""
    from raybake.clusters import backend_for

    if not overrides.get("backend") and (overrides.get("address") or overrides.get("cluster")):
        overrides["backend"] = "address"
    return backend_for(settings(c, **overrides))


def say(message: str) -> None:
    """What a task tells the user, in raybake's voice."""
    print(f"raybake: {message}")


# --variant where it names an image already built, said once for the tasks that take it so.
WHICH_BUILT = renamed((VARIANT,), variant="which built image: cuda or cpu (default: cuda)")
UNLESS_IMAGE = renamed((VARIANT,), variant="which built image when --image is not given: cuda or cpu")
