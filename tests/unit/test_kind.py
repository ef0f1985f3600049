"""`invoke kind.up`: the commands it runs, and the KubeRay version pinned in one place."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from raybake.errors import RaybakeError
from raybake.kube import kind
from raybake.versions import KUBERAY, ROOT


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
    with pytest.raises(RaybakeError, match="`kind` is not installed"):
        kind.up("rb", image=None)
