"""invoke ci.kind-dump against a stand-in kubectl: what it asks for and what it keeps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from raybake.kube import kind_debug


def _pod(namespace: str, name: str, **labels: str) -> dict:
    return {"metadata": {"namespace": namespace, "name": name, "labels": labels}}


PODS = {
    "items": [
        _pod("kuberay", "kuberay-operator-1", **{"app.kubernetes.io/name": "kuberay-operator"}),
        _pod("default", "job-head-x", **{"ray.io/node-type": "head"}),
        _pod("default", "job-worker-y", **{"ray.io/node-type": "worker"}),
        _pod("default", "job-abc", **{"batch.kubernetes.io/job-name": "job"}),
        _pod("kube-system", "coredns", **{"k8s-app": "kube-dns"}),
    ]
}


def fake_kubectl(tmp_path: Path) -> tuple[str, Path]:
    """A kubectl that records its argv, lists PODS, and fails for --previous logs."""
    calls = tmp_path / "calls.jsonl"
    script = tmp_path / "kubectl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "args = sys.argv[1:]\n"
        f"if args[-4:] == ['pods', '-A', '-o', 'json']: print({json.dumps(json.dumps(PODS))})\n"
        "elif '--previous' in args: sys.stderr.write('previous terminated container not found'); sys.exit(1)\n"
        "else: print('output of', ' '.join(args))\n"
    )
    script.chmod(0o755)
    return str(script), calls


def test_dump_keeps_each_role_and_goes_on_after_a_failure(tmp_path: Path) -> None:
    kubectl, calls = fake_kubectl(tmp_path)
    out = tmp_path / "dump"
    written = kind_debug.dump(out, kubectl=kubectl, context="kind-raybake")
    names = {p.name for p in written}
    assert {
        "get-all.txt",
        "events.txt",
        "describe-rayjob.txt",
        "describe-raycluster.txt",
        "pods.json",
        "rayjobs.yaml",
    } <= names
    for stem in (
        "operator-kuberay-kuberay-operator-1",
        "head-default-job-head-x",
        "worker-default-job-worker-y",
        "submitter-default-job-abc",
    ):
        assert f"{stem}.log" in names and f"{stem}.describe.txt" in names
        assert "[exit 1] previous terminated" in (out / f"{stem}.previous.log").read_text()
    assert not any("coredns" in n for n in names)
    argvs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert all(argv[:2] == ["--context", "kind-raybake"] for argv in argvs)
    assert ["--context", "kind-raybake", "describe", "rayjob", "-A"] in argvs
    assert (out / "describe-rayjob.txt").read_text().startswith("output of --context kind-raybake describe rayjob")


def test_dump_without_kubectl_still_writes_why(tmp_path: Path) -> None:
    written = kind_debug.dump(tmp_path / "dump", kubectl=str(tmp_path / "no-kubectl"))
    assert written
    assert all("[could not run" in p.read_text() for p in written)
