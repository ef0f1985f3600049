"""`invoke kind.up` / `kind.down`: a local Kubernetes with the KubeRay operator, for the rayjob backend.

Runs where kind, helm and Docker exist (GitHub runners, laptops). The commands are argument
lists built by pure functions, so tests check them where kind cannot run.
"""

from __future__ import annotations

import shutil
import subprocess

from raybake import console
from raybake.errors import ExitCode, RaybakeError
from raybake.versions import HELM, KUBERAY, ROOT

KIND_CONFIG = ROOT / "deploy" / "kind.yaml"
CHART_REPO = ("kuberay", "https://ray-project.github.io/kuberay-helm/")
OPERATOR_NAMESPACE = "kuberay-system"


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


def _run(argv: list[str], *, stdin: str | None = None) -> str:
    if shutil.which(argv[0]) is None:
        raise RaybakeError(
            f"`{argv[0]}` is not installed; kind-up needs kind, helm, kubectl and Docker", ExitCode.REFUSED
        )
    console.say(" ".join(argv))
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
    console.say(f"kind cluster {cluster!r} ready (context {context(cluster)}); `invoke submit --backend rayjob`")


def down(cluster: str) -> bool:
    if not exists(cluster):
        return False
    _run(delete_argv(cluster))
    return True
