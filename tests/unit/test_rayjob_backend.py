"""The rayjob backend over a stand-in Kubernetes API: create, follow, stop, list, refuse."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from crd import crd_schema, kuberay_deletion_errors
from fakekube import FakeKube

from raybake import state
from raybake.clusters import rayjob
from raybake.clusters.rayjob import RayJobBackend
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.spec import JobSpec
from raybake.submit import submit

SHAPES = Path(__file__).parent / "shapes"
STATUSES = yaml.safe_load((SHAPES / "rayjobs.yaml").read_text())
PODS = yaml.safe_load((SHAPES / "pods.yaml").read_text())
EVENTS = yaml.safe_load((SHAPES / "events.yaml").read_text())
SETTINGS = Settings(backend="rayjob", image="registry.example/raybake@sha256:" + "b" * 64)
SPEC = JobSpec(corpus="s3://bucket/corpus", output="s3://bucket/out/j1", name="raybake-embed-1")


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch, tmp_path):
    monkeypatch.setattr(rayjob, "POLL_S", 0)
    # The state file (the jobs' tokens) under the test's own folder, never the checkout's.
    monkeypatch.setattr(state, "ROOT", tmp_path)


def backend(**kw) -> tuple[RayJobBackend, FakeKube]:
    kube = FakeKube(**kw)
    return RayJobBackend(SETTINGS, kube=kube), kube


def test_submit_creates_a_valid_rayjob_the_operator_submits(capsys):
    chosen, kube = backend(statuses=[STATUSES["succeeded"]])
    code = submit(chosen, SPEC, follow=False)
    assert code == 0
    (created,) = kube.created
    jsonschema.Draft7Validator(crd_schema("rayjobs")).validate(created)
    assert created["spec"]["submissionMode"] == "HTTPMode"
    assert "created RayJob raybake-embed-1 in namespace ml" in capsys.readouterr().out
    # Token auth from a Secret raybake made for this job alone, deleted with the RayJob.
    secret, options = kube.owned
    assert created["spec"]["rayClusterSpec"]["authOptions"]["secretName"] == secret["metadata"]["name"]
    assert secret["owner"] == "raybake-embed-1" and len(secret["stringData"]["auth_token"]) >= 32
    # The options reach the driver from a Secret of their own, never through the entrypoint.
    assert created["spec"]["entrypoint"] == "python -m job --spec-from env"
    (head,) = created["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]
    ref = {"name": options["metadata"]["name"], "key": "spec"}
    assert {"name": "RAYBAKE_SPEC", "valueFrom": {"secretKeyRef": ref}} in head["env"]
    assert options["owner"] == "raybake-embed-1" and options["stringData"] == {"spec": SPEC.encoded()}


def test_the_jobs_token_stays_on_this_client_readable_by_its_user_alone_and_goes_with_the_rayjob():
    chosen, kube = backend(statuses=[STATUSES["succeeded"]])
    chosen.submit(chosen.prepare(SPEC))
    # Beside it, the job's options' Secret (the head reads them from there).
    (secret,) = [o for o in kube.owned if o["metadata"]["name"] == "raybake-embed-1-ray-token"]
    assert state.job_token(SETTINGS, "ml", "raybake-embed-1") == secret["stringData"]["auth_token"]
    assert state.path_of(SETTINGS).stat().st_mode & 0o777 == 0o600
    # Another namespace's RayJob of that name is another job.
    assert state.job_token(SETTINGS, "other", "raybake-embed-1") is None
    chosen.stop("raybake-embed-1", delete=True)
    assert state.job_token(SETTINGS, "ml", "raybake-embed-1") is None


def test_a_rayjob_submitted_elsewhere_has_no_token_here_and_says_so_in_one_line():
    chosen, kube = backend(statuses=[STATUSES["running"]])
    kube.created.append(chosen.manifest(chosen.prepare(SPEC)))
    with pytest.raises(RaybakeError, match="no Ray token for RayJob 'raybake-embed-1'.*submitted from another machine"):
        chosen.logs("raybake-embed-1")
    assert chosen.status("raybake-embed-1").status == "RUNNING"


def test_follow_reports_phases_and_stuck_reasons_once_and_ends_on_the_rayjobs_status(capsys):
    statuses = [STATUSES[s] for s in ("new", "initializing", "initializing", "initializing", "running", "succeeded")]
    chosen, kube = backend(statuses=statuses, pods=[PODS["pending-gpus"]])
    kube.created.append(chosen.manifest(chosen.prepare(SPEC)))
    result = chosen.follow("raybake-embed-1")
    out = capsys.readouterr().out
    assert result.status == "SUCCEEDED"
    assert out.count("waits for GPUs") == 1
    assert "Initializing / -" in out and "Running / RUNNING" in out
    assert "no log (" in out  # no head to forward to: the RayJob's status still decides


def test_a_namespace_that_refuses_the_pods_is_named_within_one_poll(capsys, monkeypatch):
    """Pod Security admission refuses the head: no pod exists, only the RayCluster's event says why."""

    def one_poll(look, every_s):
        assert look() is None  # still starting
        raise KeyboardInterrupt

    monkeypatch.setattr(rayjob.poll, "first", one_poll)
    chosen, kube = backend(statuses=[STATUSES["initializing"]], events=list(EVENTS.values()))
    kube.created.append(chosen.manifest(chosen.prepare(SPEC)))
    with pytest.raises(KeyboardInterrupt):
        chosen.follow("raybake-embed-1")
    lines = [line for line in capsys.readouterr().out.splitlines() if "Pod Security" in line]
    assert len(lines) == 1
    assert lines[0].startswith(
        "raybake: raybake-embed-1: RayCluster raybake-embed-20261125-120000-bqgwh cannot create its pods: "
        'the namespace enforces Pod Security "restricted:latest"'
    )


@pytest.mark.parametrize(("final", "code"), [("failed", 1), ("deadline", 1), ("stopped", 1), ("succeeded", 0)])
def test_exit_code_is_zero_only_on_succeeded(final, code):
    chosen, _kube = backend(statuses=[STATUSES["running"], STATUSES[final]])
    assert submit(chosen, SPEC) == code


def test_operator_missing_is_refused_before_anything_is_created():
    chosen, kube = backend(statuses=[STATUSES["new"]], served=None)
    with pytest.raises(RaybakeError, match="KubeRay operator is not installed"):
        chosen.submit(chosen.prepare(SPEC))
    assert kube.created == []


def test_crds_of_another_version_are_refused():
    for kw, refusal in (({"served": ["v1alpha1"]}, "not v1"), ({"kinds": ("RayCluster",)}, "has no RayJob")):
        chosen, kube = backend(statuses=[STATUSES["new"]], **kw)
        with pytest.raises(RaybakeError, match=refusal):
            chosen.submit(chosen.prepare(SPEC))
        assert kube.created == []


def test_an_operator_that_never_acts_is_reported(monkeypatch):
    monkeypatch.setattr(rayjob.stuck, "NO_OPERATOR_AFTER_S", -1)
    chosen, kube = backend(statuses=[STATUSES["new"]])
    kube.created.append(chosen.manifest(chosen.prepare(SPEC)))
    with pytest.raises(RaybakeError, match="no KubeRay operator has acted"):
        chosen.follow("raybake-embed-1")


def test_stop_suspends_and_delete_deletes():
    chosen, kube = backend(statuses=[STATUSES["running"]])
    kube.created.append(chosen.manifest(chosen.prepare(SPEC)))
    chosen.stop("raybake-embed-1")
    (patch,) = kube.patches
    # A JSON merge patch (RFC 7386): None deletes. KubeRay suspends only with
    # shutdownAfterJobFinishes, which it refuses beside deletionRules.
    spec = {k: v for k, v in {**kube.created[0]["spec"], **patch["spec"]}.items() if v is not None}
    assert spec["suspend"] is True and spec["shutdownAfterJobFinishes"] is True
    assert "deletionStrategy" not in spec
    assert kuberay_deletion_errors(spec) == []
    chosen.stop("raybake-embed-1", delete=True)
    assert kube.deleted == ["raybake-embed-1"]
    with pytest.raises(RaybakeError, match="no RayJob 'other'"):
        chosen.stop("other")


def test_jobs_lists_the_rayjobs_with_their_status():
    chosen, kube = backend(statuses=[STATUSES["running"]])
    kube.created.append(chosen.manifest(chosen.prepare(SPEC)))
    assert [(r["id"], r["status"]) for r in chosen.jobs()] == [("raybake-embed-1", "RUNNING")]


def test_a_local_corpus_makes_an_interactive_rayjob(tmp_path):
    (tmp_path / "a.txt").write_text("doc")
    chosen, _kube = backend(statuses=[STATUSES["new"]])
    ready = chosen.prepare(JobSpec(corpus=str(tmp_path), output="s3://b/o", name="raybake-embed-1"))
    manifest = chosen.manifest(ready)
    assert manifest["spec"]["submissionMode"] == "InteractiveMode"
    assert manifest["metadata"]["annotations"]["raybake.io/corpus"] == str(tmp_path)


def test_dry_run_needs_no_cluster_and_no_image_means_a_clear_error(capsys, tmp_path):
    assert submit(RayJobBackend(SETTINGS), SPEC, dry_run=True) == 0
    shown = capsys.readouterr().out
    rayjob, secret, options = yaml.safe_load_all(shown)
    assert rayjob["kind"] == "RayJob" and rayjob["spec"]["entrypoint"] == "python -m job --spec-from env"
    assert f"# the job's options, from its Secret: {SPEC.shown_command()}\n" in shown
    assert secret["kind"] == "Secret" and secret["stringData"] == {"auth_token": "<redacted>"}
    assert options["kind"] == "Secret" and options["stringData"] == {"spec": "<redacted>"}
    no_state = Settings(backend="rayjob", variant="cpu", state_file=str(tmp_path / "state.json"))
    with pytest.raises(RaybakeError, match="invoke push --variant cpu"):
        unpushed = RayJobBackend(no_state, kube=FakeKube())
        unpushed.describe(unpushed.prepare(SPEC))


def test_an_upload_that_cannot_start_deletes_its_waiting_rayjob(tmp_path):
    (tmp_path / "a.txt").write_text("doc")
    chosen, kube = backend(statuses=[STATUSES["new"], STATUSES["validation-failed"]])
    placed = chosen.prepare(JobSpec(corpus=str(tmp_path), output="s3://b/o", name="raybake-embed-1"))
    with pytest.raises(RaybakeError, match=r"ended before its cluster was ready: .*47 characters.*deleted"):
        chosen.submit(placed)
    assert kube.deleted == ["raybake-embed-1"]


def test_an_upload_to_a_cluster_without_a_reachable_head_deletes_its_rayjob(tmp_path):
    (tmp_path / "a.txt").write_text("doc")
    chosen, kube = backend(statuses=[STATUSES["waiting"]])
    placed = chosen.prepare(JobSpec(corpus=str(tmp_path), output="s3://b/o", name="raybake-embed-1"))
    with pytest.raises(RaybakeError, match="no running head pod") as refused:
        chosen.submit(placed)
    assert refused.value.code == 3
    assert kube.deleted == ["raybake-embed-1"]


def test_network_policy_is_created_and_shown_by_the_dry_run_when_asked(capsys):
    chosen = RayJobBackend(Settings(backend="rayjob", image=SETTINGS.image, network_policy=True), kube=FakeKube())
    assert submit(chosen, SPEC, dry_run=True) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds == ["RayJob", "Secret", "Secret", "NetworkPolicy"]
    chosen.kube.statuses = [STATUSES["succeeded"]]
    chosen.submit(chosen.prepare(SPEC))
    assert [o["kind"] for o in chosen.kube.owned] == ["Secret", "Secret", "NetworkPolicy"]


def test_a_secret_that_cannot_be_made_takes_its_rayjob_with_it():
    chosen, kube = backend(statuses=[STATUSES["succeeded"]])

    def refuse(manifest, owner):
        raise RaybakeError("creating Secret 'x' failed: HTTP 403 Forbidden", 3)

    kube.create_owned = refuse
    with pytest.raises(RaybakeError, match="403 Forbidden.*RayJob raybake-embed-1 deleted"):
        chosen.submit(chosen.prepare(SPEC))
    assert kube.deleted == ["raybake-embed-1"]
