"""RayJob status to result and exit code, and the one-line "why is it stuck" reasons, on real shapes."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubeshape
import pytest
import yaml
from crd import crd_schema

from raybake.kube.stuck import (
    NO_OPERATOR_AFTER_S,
    api_problem,
    event_problem,
    missing_kind,
    phase,
    pod_problem,
    result_of,
    stuck_reason,
)
from raybake.result import exit_code

SHAPES = Path(__file__).parent / "shapes"
STATUSES = yaml.safe_load((SHAPES / "rayjobs.yaml").read_text())
PODS = yaml.safe_load((SHAPES / "pods.yaml").read_text())
EVENTS = yaml.safe_load((SHAPES / "events.yaml").read_text())


@pytest.mark.parametrize("name", sorted(STATUSES))
def test_status_shapes_are_what_the_crd_allows(name):
    schema = crd_schema("rayjobs")["properties"]["status"]
    jsonschema.Draft7Validator(schema).validate(STATUSES[name])


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("new", "PENDING", 1),
        ("initializing", "PENDING", 1),
        ("waiting", "PENDING", 1),
        ("running", "RUNNING", 1),
        ("succeeded", "SUCCEEDED", 0),
        ("failed", "FAILED", 1),
        ("deadline", "FAILED", 1),
        ("stopped", "STOPPED", 1),
        ("suspended", "STOPPED", 1),
        ("validation-failed", "FAILED", 1),
    ],
)
def test_status_maps_to_result_and_exit_code(name, status, code):
    result = result_of("j", STATUSES[name])
    assert (result.status, exit_code(result)) == (status, code)


def test_a_failure_carries_the_reason_kuberay_gives():
    assert "PreRunningDeadlineExceeded" in result_of("j", STATUSES["deadline"]).message
    assert "2 shard(s) failed" in result_of("j", STATUSES["failed"]).message
    assert "47 characters" in result_of("j", STATUSES["validation-failed"]).message


def test_phase_is_one_short_line():
    assert phase(STATUSES["running"]) == "Running / RUNNING"
    assert phase(STATUSES["new"]) == "New / -"


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        ("image-pull-backoff", "cannot pull image 'registry.example/ml/raybake@sha256:9f0c"),
        ("err-image-pull", "cannot pull image 'registry.example/ml/raybake:nope' (ErrImagePull)"),
        ("pending-gpus", "waits for GPUs: 0/3 nodes are available"),
        ("unschedulable-memory", "cannot be scheduled: 0/2 nodes are available: 2 Insufficient memory"),
        ("crash-loop", "fails to start (CrashLoopBackOff)"),
    ],
)
def test_each_stuck_pod_says_why_in_one_line(pod, expected):
    reason = pod_problem(PODS[pod])
    assert expected in reason
    assert "\n" not in reason
    assert "preemption" not in reason  # the scheduler's tail is noise


def test_a_healthy_pod_is_not_stuck():
    assert pod_problem(PODS["running"]) is None
    assert stuck_reason(STATUSES["running"], [PODS["running"]], age_s=600) is None


def test_stuck_reason_names_the_first_stuck_pod():
    pods = [PODS["running"], PODS["pending-gpus"], PODS["image-pull-backoff"]]
    assert "waits for GPUs" in stuck_reason(STATUSES["initializing"], pods, age_s=30)


def test_an_empty_status_means_no_operator_only_after_a_while():
    assert stuck_reason(STATUSES["new"], [], age_s=NO_OPERATOR_AFTER_S / 2) is None
    assert "no KubeRay operator" in stuck_reason(STATUSES["new"], [], age_s=NO_OPERATOR_AFTER_S + 1)
    assert stuck_reason(STATUSES["initializing"], [], age_s=NO_OPERATOR_AFTER_S * 10) is None


def test_operator_missing_and_crd_version_mismatch():
    assert "KubeRay operator is not installed" in api_problem(None)
    assert "serve ray.io v1alpha1, not v1" in api_problem(["v1alpha1"])
    assert api_problem(["v1", "v1alpha1"]) is None
    assert "has no RayJob" in missing_kind("RayJob", ["RayCluster"])
    assert missing_kind("RayJob", ["RayCluster", "RayJob", "RayService"]) is None


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_event_shapes_are_the_apis_own(name):
    kubeshape.check(EVENTS[name], "CoreV1Event")


@pytest.mark.parametrize("name", ["raycluster-podsecurity", "job-podsecurity"])
def test_a_pod_security_refusal_is_named_in_one_line_with_what_it_refuses(name):
    event = EVENTS[name]
    reason = event_problem([EVENTS["rayjob-created-cluster"], event])
    assert reason is not None and "\n" not in reason
    obj = event["involvedObject"]
    assert reason.startswith(f"{obj['kind']} {obj['name']} cannot create its pods: ")
    assert 'enforces Pod Security "restricted:latest"' in reason
    assert 'allowPrivilegeEscalation != false (container "ray-job-submitter"' in reason
    # Also when the pods it lists are none yet: nothing else explains the wait.
    assert stuck_reason(STATUSES["initializing"], [], age_s=30, events=[event]) == reason


def test_another_refused_create_is_told_and_normal_events_are_not():
    reason = event_problem([EVENTS["raycluster-quota"]])
    assert reason.startswith(
        "RayCluster raybake-embed-20261125-120000-bqgwh cannot create its pods (FailedToCreateWorkerPod)"
    )
    assert "exceeded quota: compute" in reason
    assert event_problem([EVENTS["rayjob-created-cluster"]]) is None
    # The Pod Security refusal is the one named, whichever came first.
    both = [EVENTS["raycluster-quota"], EVENTS["raycluster-podsecurity"]]
    assert "Pod Security" in event_problem(both)
