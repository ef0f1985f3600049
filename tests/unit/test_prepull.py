"""`invoke prepull`'s DaemonSet: a valid apps/v1 object that pulls the image where the job runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from kubeshape import check

from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.kube import prepull
from raybake.kube.manifests import to_yaml
from raybake.versions import ROOT

IMAGE = "registry.example/raybake@sha256:" + "a" * 64


def test_the_daemonset_is_a_valid_apps_v1_daemonset():
    manifest = prepull.daemonset(IMAGE, settings=Settings(), nodes="nvidia.com/gpu.present=true")
    check(manifest, "V1DaemonSet")
    # What --dry-run prints is the same document.
    check(yaml.safe_load(to_yaml(manifest)), "V1DaemonSet")


def test_the_shape_check_catches_a_misspelt_or_missing_field():
    manifest = prepull.daemonset(IMAGE, settings=Settings())
    pod = manifest["spec"]["template"]["spec"]
    pod["toleration"] = pod.pop("tolerations")
    with pytest.raises(ValueError, match="toleration: not a field of V1PodSpec"):
        check(manifest, "V1DaemonSet")
    manifest = prepull.daemonset(IMAGE, settings=Settings())
    del manifest["spec"]["selector"]
    with pytest.raises(ValueError, match="selector"):
        check(manifest, "V1DaemonSet")


def test_it_runs_the_image_on_the_selected_gpu_nodes_and_selects_its_own_pods():
    settings = Settings(image_pull_secrets="regcred", priority_class="prepull", tolerations="dedicated=ml:NoSchedule")
    manifest = prepull.daemonset(IMAGE, settings=settings, nodes="nvidia.com/gpu.present=true")
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE and container["imagePullPolicy"] == "IfNotPresent"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "prepull"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "runAsUser" not in container["securityContext"]
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert selector.items() <= manifest["spec"]["template"]["metadata"]["labels"].items()


def test_the_job_settings_node_selector_is_the_default_and_one_daemonset_per_image():
    manifest = prepull.daemonset(IMAGE, settings=Settings(node_selector="pool=gpu"))
    assert manifest["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert prepull.name_for(IMAGE) == manifest["metadata"]["name"]
    assert prepull.name_for(IMAGE + "x") != manifest["metadata"]["name"]
    assert len(manifest["metadata"]["name"]) <= 63


def test_the_dry_run_shows_switches_and_needs_an_image():
    printed = to_yaml(prepull.daemonset(IMAGE, settings=Settings()))
    assert "automountServiceAccountToken: false" in printed
    with pytest.raises(RaybakeError, match="needs an image"):
        prepull.daemonset("", settings=Settings())


def test_invoke_prepull_dry_run_prints_it(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "prepull", "--image", IMAGE, "--nodes", "pool=gpu", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    check(yaml.safe_load(done.stdout), "V1DaemonSet")
