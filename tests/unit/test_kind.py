"""`invoke kind.up`: the commands it runs, and the KubeRay version pinned in one place."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

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


ADMIN = {
    "clusters": [
        {"name": "kind-rb", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="}}
    ],
    "users": [{"name": "kind-rb", "user": {"client-key-data": "ADMIN-KEY"}}],
}


def fake_tools(monkeypatch, tmp_path) -> list:
    """kind, helm and kubectl as `_run` sees them: each command recorded, the answers it needs."""
    ran = []

    def run(argv, stdin=None, quiet=False):
        ran.append((argv, stdin, quiet))
        if argv[1] == "version":
            return f"v{HELM}"
        if argv[1:3] == ["config", "view"]:
            return json.dumps(ADMIN)
        if argv[1:3] == ["create", "token"]:
            return "SA-TOKEN\n"
        return "crds"

    monkeypatch.setattr(kind, "_run", run)
    monkeypatch.setattr(kind, "exists", lambda cluster: True)
    monkeypatch.setattr(kind, "kubeconfig_path", lambda cluster: tmp_path / f"{cluster}.kubeconfig")
    return ran


def test_the_charts_crds_are_applied_server_side_before_the_operator_upgrade(monkeypatch, tmp_path):
    ran = fake_tools(monkeypatch, tmp_path)
    kind.up("rb", image=None)
    argvs = [argv for argv, *_ in ran]
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


def test_kind_up_makes_a_restricted_namespace_and_a_kubeconfig_that_is_only_the_documented_role(monkeypatch, tmp_path):
    ran = fake_tools(monkeypatch, tmp_path)
    kind.up("rb", image=None)
    applied = {tuple(argv): stdin for argv, stdin, _quiet in ran if argv[1] == "apply"}
    namespace = json.loads(applied[tuple(kind.apply_argv("rb"))])
    assert namespace["metadata"] == {
        "name": kind.NAMESPACE,
        "labels": {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "audit", "warn")},
    }
    assert applied[tuple(kind.apply_argv("rb", namespace=kind.NAMESPACE))] == kind.ROLE.read_text()
    # The token and the admin's keys are never shown; the commands that return them run quiet.
    assert all(quiet for argv, _stdin, quiet in ran if argv[1] in ("config", "create"))
    path = tmp_path / "rb.kubeconfig"
    config = yaml.safe_load(path.read_text())
    assert path.stat().st_mode & 0o777 == 0o600
    (user,) = config["users"]
    assert user["user"] == {"token": "SA-TOKEN"}  # not the admin's client key
    (ctx,) = config["contexts"]
    assert config["current-context"] == ctx["name"] == f"{kind.SERVICE_ACCOUNT}@kind-rb"
    assert ctx["context"]["namespace"] == kind.NAMESPACE and config["clusters"] == ADMIN["clusters"]
    role_docs = {d["kind"]: d for d in yaml.safe_load_all(kind.ROLE.read_text())}
    binding = role_docs["RoleBinding"]
    assert binding["roleRef"]["name"] == role_docs["Role"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": kind.SERVICE_ACCOUNT}]


def test_a_quiet_command_shows_neither_its_arguments_nor_its_output(capsys):
    kind._run([sys.executable, "-c", "import sys; print(sys.argv[1] + '-OUT')", "SECRET"], quiet=True)
    assert "SECRET" not in capsys.readouterr().out
