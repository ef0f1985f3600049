"""`invoke kind.up` / `kind.down`: a local Kubernetes with the KubeRay operator, for the rayjob backend.

Runs where kind, helm and Docker exist (GitHub runners, laptops). The commands are argument
lists built by pure functions, so tests check them where kind cannot run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from raybake import console
from raybake.errors import ExitCode, RaybakeError
from raybake.private import write_private
from raybake.versions import HELM, KUBERAY, ROOT

KIND_CONFIG = ROOT / "deploy" / "kind.yaml"
CHART_REPO = ("kuberay", "https://ray-project.github.io/kuberay-helm/")
OPERATOR_NAMESPACE = "kuberay-system"
# Where raybake's jobs run on the kind cluster: a namespace that enforces Pod Security
# "restricted", reached as a ServiceAccount bound only to deploy/rbac/role.yaml's Role.
NAMESPACE = "raybake"
ROLE = ROOT / "deploy" / "rbac" / "role.yaml"
SERVICE_ACCOUNT = next(d for d in yaml.safe_load_all(ROLE.read_text()) if d["kind"] == "ServiceAccount")["metadata"][
    "name"
]
RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
TOKEN_HOURS = 12


def context(cluster: str) -> str:
    """The kubeconfig context kind writes (and makes current) for a cluster."""
    return f"kind-{cluster}"


def create_argv(cluster: str) -> list[str]:
    return ["kind", "create", "cluster", "--name", cluster, "--config", str(KIND_CONFIG), "--wait", "180s"]


def crd_argvs(cluster: str) -> tuple[list[str], list[str]]:
    """The chart's CRDs, applied server-side before the operator: Helm installs CRDs only on a
    first install, so an upgraded operator would otherwise run against the old ones."""
    name, _ = CHART_REPO
    show = ["helm", "show", "crds", f"{name}/kuberay-operator", "--version", KUBERAY]
    apply = ["kubectl", "apply", "--server-side", "--force-conflicts", "--context", context(cluster), "-f", "-"]
    return show, apply


def operator_argvs(cluster: str) -> list[list[str]]:
    name, url = CHART_REPO
    return [
        ["helm", "repo", "add", name, url, "--force-update"],
        [
            "helm",
            "upgrade",
            "--install",
            "kuberay-operator",
            f"{name}/kuberay-operator",
            "--version",
            KUBERAY,
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--kube-context",
            context(cluster),
            "--wait",
            "--timeout",
            "5m",
        ],
    ]


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": RESTRICTED}}


def apply_argv(cluster: str, *, namespace: str | None = None) -> list[str]:
    """`kubectl apply` of stdin as the kind cluster's admin (what kind wrote)."""
    where = ["--namespace", namespace] if namespace else []
    return ["kubectl", "apply", "--context", context(cluster), *where, "-f", "-"]


def token_argv(cluster: str) -> list[str]:
    return [
        "kubectl", "create", "token", SERVICE_ACCOUNT, "--namespace", NAMESPACE,
        "--context", context(cluster), "--duration", f"{TOKEN_HOURS}h",
    ]  # fmt: skip


def kubeconfig_path(cluster: str) -> Path:
    """The ServiceAccount's own kubeconfig: the admin's stays as kind wrote it."""
    return ROOT / ".raybake" / f"kind-{cluster}-{SERVICE_ACCOUNT}.kubeconfig"


def service_account_kubeconfig(admin: dict[str, Any], *, cluster: str, token: str) -> dict[str, Any]:
    """The kind cluster's server and CA from the admin's (minified) config, the ServiceAccount's
    token, the namespace: one context, current."""
    name = f"{SERVICE_ACCOUNT}@{context(cluster)}"
    server = admin["clusters"][0]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": server["name"], "user": name, "namespace": NAMESPACE}}],
        "current-context": name,
    }


def load_argv(cluster: str, image: str) -> list[str]:
    return ["kind", "load", "docker-image", image, "--name", cluster]


def check_helm(version: str) -> None:
    """Another major Helm may render the chart differently: refuse it; another minor only warns."""
    found = version.strip().lstrip("v").split(".")
    if found[:1] != HELM.split(".")[:1]:
        raise RaybakeError(
            f"helm {version.strip()!r} is not the pinned {HELM!r} (raybake/versions.py): install it", ExitCode.REFUSED
        )
    if found[:3] != HELM.split("."):
        console.say(f"helm {version.strip()} is not the pinned {HELM}; continuing")


def delete_argv(cluster: str) -> list[str]:
    return ["kind", "delete", "cluster", "--name", cluster]


def _run(argv: list[str], *, stdin: str | None = None, quiet: bool = False) -> str:
    """Run a command; `quiet`: its output is a credential, so neither it nor the command is shown."""
    if shutil.which(argv[0]) is None:
        raise RaybakeError(
            f"`{argv[0]}` is not installed; kind-up needs kind, helm, kubectl and Docker", ExitCode.REFUSED
        )
    console.say(" ".join(argv) if not quiet else f"{' '.join(argv[:3])} ...")
    done = subprocess.run(argv, capture_output=True, text=True, input=stdin)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RaybakeError(f"`{' '.join(argv[:3])}` failed (exit {done.returncode}): {tail[0]}", ExitCode.UNREACHABLE)
    return done.stdout


def exists(cluster: str) -> bool:
    return cluster in _run(["kind", "get", "clusters"]).split()


def up(cluster: str, *, image: str | None) -> None:
    """Create (or reuse) the cluster, install the pinned operator, load the image into its nodes."""
    check_helm(_run(["helm", "version", "--template", "{{.Version}}"]))
    if not exists(cluster):
        _run(create_argv(cluster))
    repo_add, install = operator_argvs(cluster)
    _run(repo_add)
    show, apply = crd_argvs(cluster)
    _run(apply, stdin=_run(show))
    _run(install)
    if image:
        _run(load_argv(cluster, image))
    else:
        console.say("no image built yet; `invoke build --variant cpu`, then `invoke kind.up` again loads it")
    path = least_privilege(cluster)
    console.say(
        f"kind cluster {cluster!r} ready (context {context(cluster)}); as raybake's Role in the restricted "
        f"namespace {NAMESPACE!r}: KUBECONFIG={path} invoke submit --backend rayjob"
    )


def least_privilege(cluster: str) -> Path:
    """The restricted namespace, the Role and its ServiceAccount, and a kubeconfig that is that account."""
    _run(apply_argv(cluster), stdin=json.dumps(namespace()))
    _run(apply_argv(cluster, namespace=NAMESPACE), stdin=ROLE.read_text())
    minified = ["kubectl", "config", "view", "--raw", "--minify", "--context", context(cluster), "-o", "json"]
    admin = json.loads(_run(minified, quiet=True))
    token = _run(token_argv(cluster), quiet=True).strip()
    path = kubeconfig_path(cluster)
    return write_private(path, yaml.safe_dump(service_account_kubeconfig(admin, cluster=cluster, token=token)))


def down(cluster: str) -> bool:
    if not exists(cluster):
        return False
    _run(delete_argv(cluster))
    return True
