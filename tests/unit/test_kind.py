"""`invoke kind.up`: the commands it runs, and the KubeRay version pinned in one place."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from raybake.errors import RaybakeError
from raybake.kube import kind
from raybake.versions import HELM, KIND, KIND_NODE_IMAGE, KUBERAY, ROOT


def test_create_uses_the_checked_in_config():
    argv = kind.create_argv("rb")
    assert argv[:5] == ["kind", "create", "cluster", "--name", "rb"]
    assert argv[argv.index("--config") + 1] == str(ROOT / "deploy" / "kind.yaml")
    assert (ROOT / "deploy" / "kind.yaml").is_file()


def test_operator_chart_is_the_pinned_version_in_the_kind_context():
    add, install = kind.operator_argvs("rb")
    assert add[:3] == ["helm", "repo", "add"]
    assert install[install.index("--version") + 1] == KUBERAY
    assert install[install.index("--kube-context") + 1] == "kind-rb"
    assert "--wait" in install


def test_load_and_delete():
    assert kind.load_argv("rb", "raybake:abc") == ["kind", "load", "docker-image", "raybake:abc", "--name", "rb"]
    assert kind.delete_argv("rb") == ["kind", "delete", "cluster", "--name", "rb"]


def test_kuberay_version_is_written_in_one_place_only():
    """Code, config and workflows read raybake.versions.KUBERAY (or `invoke versions`); prose may quote it."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    holders = [
        path
        for path in tracked.stdout.split()
        if not path.endswith(".md") and (ROOT / path).is_file() and KUBERAY in (ROOT / path).read_text(errors="ignore")
    ]
    assert holders == ["raybake/versions.py"]


@pytest.mark.skipif(shutil.which("kind") is not None, reason="kind is installed here")
def test_without_kind_the_user_is_told_what_is_missing():
    with pytest.raises(RaybakeError, match="is not installed; kind-up needs kind, helm, kubectl"):
        kind.up("rb", image=None)


def test_the_kind_node_image_is_pinned_by_digest_and_deploy_kind_yaml_is_the_same():
    assert re.fullmatch(r"kindest/node:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", KIND_NODE_IMAGE)
    config = yaml.safe_load((ROOT / "deploy" / "kind.yaml").read_text())
    assert [node["image"] for node in config["nodes"]] == [KIND_NODE_IMAGE] * len(config["nodes"])


def test_the_workflow_installs_the_pinned_kind():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "e2e-kind.yml").read_text())
    steps = workflow["jobs"]["kind"]["steps"]
    kind_action = next(s for s in steps if s.get("uses", "").startswith("helm/kind-action@"))
    assert kind_action["with"]["version"] == "v${{ env.KIND_VERSION }}"
    versions = next(i for i, s in enumerate(steps) if "invoke versions" in s.get("run", ""))
    assert versions < steps.index(kind_action)
    assert KIND and HELM


def test_the_charts_crds_are_applied_server_side_before_the_operator_upgrade(monkeypatch):
    ran = []

    def run(argv, stdin=None):
        ran.append((argv, stdin))
        return f"v{HELM}" if argv[1] == "version" else "crds"

    monkeypatch.setattr(kind, "_run", run)
    monkeypatch.setattr(kind, "exists", lambda cluster: True)
    kind.up("rb", image=None)
    argvs = [argv for argv, _ in ran]
    show, apply = kind.crd_argvs("rb")
    assert show == ["helm", "show", "crds", "kuberay/kuberay-operator", "--version", KUBERAY]
    assert {"--server-side", "--force-conflicts"} <= set(apply) and apply[apply.index("--context") + 1] == "kind-rb"
    assert argvs.index(show) < argvs.index(apply) < argvs.index(kind.operator_argvs("rb")[1])
    assert ran[argvs.index(apply)][1] == "crds"


@pytest.mark.parametrize(
    ("found", "ok"), [(f"v{HELM}", True), ("v3.99.0", True), ("v4.0.0", False), ("v2.17.0", False)]
)
def test_helm_of_another_major_is_refused(found, ok):
    if ok:
        kind.check_helm(found)
    else:
        with pytest.raises(RaybakeError, match="not the pinned"):
            kind.check_helm(found)
