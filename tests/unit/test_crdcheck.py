"""The served RayJob CRD against what raybake renders: older CRDs (Helm never upgrades them) are named."""

from __future__ import annotations

import copy

import pytest
from crd import served_crd_schema
from fakekube import FakeKube
from test_manifests import render

from raybake.clusters.rayjob import RayJobBackend
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.kube import crdcheck
from raybake.spec import JobSpec


def older_schema() -> dict:
    """The pinned schema without deletionStrategy, as CRDs from before KubeRay 1.5's deletionRules."""
    schema = copy.deepcopy(served_crd_schema("rayjobs"))
    del schema["properties"]["spec"]["properties"]["deletionStrategy"]
    return schema


@pytest.mark.parametrize("settings", [Settings(), Settings(gpus=4, node_selector="a=b", hf_cache_pvc="hf")])
def test_every_rendered_field_is_declared_by_the_pinned_crd(settings):
    assert crdcheck.undeclared(served_crd_schema("rayjobs"), render(settings)) == []
    assert crdcheck.problem(served_crd_schema("rayjobs"), render(settings)) is None


def test_an_older_crd_is_named_with_the_fields_it_would_drop_and_the_fix():
    found = crdcheck.problem(older_schema(), render(Settings(gpus=4)))
    assert "spec.deletionStrategy" in found
    assert "--server-side" in found and "helm show crds" in found
    assert crdcheck.problem(older_schema(), render(Settings(gpus=4, delete_workers_at_end=False))) is None


def test_free_form_maps_and_preserved_fields_are_not_reported():
    manifest = render()
    manifest["metadata"]["labels"]["anything.example/x"] = "1"
    assert crdcheck.undeclared(served_crd_schema("rayjobs"), manifest) == []


def test_submit_refuses_before_creating_against_an_older_crd():
    kube = FakeKube(statuses=[{}], schema=older_schema())
    chosen = RayJobBackend(Settings(gpus=4, image="img@sha256:" + "a" * 64), kube=kube)
    spec = JobSpec(corpus="s3://b/c", output="s3://b/o", name="raybake-embed-1")
    with pytest.raises(RaybakeError, match="older than KubeRay"):
        chosen.submit(chosen.prepare(spec))
    assert kube.created == []
