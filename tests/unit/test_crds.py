"""The KubeRay CRDs in deploy/crds/ are the pinned release's, unmodified."""

from __future__ import annotations

import hashlib
import re

from crd import CRDS, crd_schema

from raybake.versions import KUBERAY

NOTE = (CRDS / "README.md").read_text()


def test_the_crds_are_of_the_pinned_kuberay_version():
    recorded = re.search(r"^kuberay-version: (\S+)$", NOTE, re.MULTILINE)
    assert recorded and recorded.group(1) == KUBERAY
    assert f"KubeRay v{KUBERAY} release" in NOTE and "Apache License 2.0" in NOTE


def test_the_crds_are_unmodified_copies():
    digests = dict((name, digest) for digest, name in re.findall(r"^- ([0-9a-f]{64})  (\S+)$", NOTE, re.MULTILINE))
    files = {p.name for p in CRDS.glob("*.yaml")}
    assert files == set(digests) == {"ray.io_rayjobs.yaml", "ray.io_rayclusters.yaml"}
    for name, digest in digests.items():
        assert hashlib.sha256((CRDS / name).read_bytes()).hexdigest() == digest, name


def test_both_crds_serve_v1():
    for kind in ("rayjobs", "rayclusters"):
        assert crd_schema(kind)["properties"]["spec"]["type"] == "object"
