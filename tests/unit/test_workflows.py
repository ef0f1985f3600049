"""The real workflows: actionlint, GitHub's workflow schema, zizmor, the project's rules, their contract.

Each check is shown able to fail on a broken copy, so a green run means something.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from raybake import versions
from tools import workflow_policy
from tools.lint import tool, zizmor

WORKFLOWS = {p.name: p for p in workflow_policy.workflow_files()}
EXPECTED = {"ci.yml", "e2e-kind.yml", "image.yml", "submit.yml", "pr-image.yml", "pr-trial.yml"}
# Tasks and flags the workflows call that other branches deliver; a name here must be one of
# those, so a typo in a workflow still fails. Empty it once they are merged.
PENDING = {
    "build": "issue 3: invoke build --variant cpu|cuda [--push]",
    "push": "issue 3: invoke push --variant cuda",
    "push --tag": "issue 3: extra tags (sha-<commit>, the release tag) on the pushed image",
}


def _actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    argv = [tool("actionlint"), "-shellcheck", tool("shellcheck"), "-no-color", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _schema(path: Path) -> subprocess.CompletedProcess[str]:
    argv = [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_the_workflows_exist() -> None:
    assert set(WORKFLOWS) >= EXPECTED


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_actionlint_passes(name: str) -> None:
    done = _actionlint(WORKFLOWS[name])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_github_workflow_schema_passes(name: str) -> None:
    done = _schema(WORKFLOWS[name])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_zizmor_passes(name: str) -> None:
    done = subprocess.run(zizmor(versions.ROOT, [str(WORKFLOWS[name])]), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_workflow_rules_pass(name: str) -> None:
    assert [str(p) for p in workflow_policy.check(WORKFLOWS[name])] == []


def test_actionlint_and_the_schema_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = WORKFLOWS["ci.yml"].read_text()
    # An unknown expression context for actionlint, a misspelt key for the schema.
    broken.write_text(text.replace("github.ref }}", "gihtub.ref }}").replace("runs-on:", "runs_on:", 1))
    assert "gihtub" in _actionlint(broken).stdout
    assert _schema(broken).returncode != 0


def test_shellcheck_runs_inside_actionlint(tmp_path: Path) -> None:
    unquoted = tmp_path / "unquoted.yml"
    unquoted.write_text(
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    timeout-minutes: 5\n"
        "    steps:\n      - run: invoke ci.summary --job $JOB\n"
    )
    assert "SC2086" in _actionlint(unquoted).stdout


def _triggers(name: str) -> dict:
    on = workflow_policy.load(WORKFLOWS[name])["on"]
    return on if isinstance(on, dict) else dict.fromkeys(on)


def test_triggers() -> None:
    assert {"push", "pull_request"} <= set(_triggers("ci.yml"))
    assert {"push", "pull_request"} <= set(_triggers("e2e-kind.yml"))
    image = _triggers("image.yml")
    assert set(image) == {"push"} and image["push"]["branches"] == ["main"] and image["push"]["tags"]
    submit = _triggers("submit.yml")
    assert set(submit) == {"workflow_dispatch"}
    assert _triggers("pr-image.yml") == {"pull_request": {"types": ["labeled"]}}
    # workflow_run names the workflow it follows by its name: a rename would silently break it.
    pr_image = workflow_policy.load(WORKFLOWS["pr-image.yml"])["name"]
    assert _triggers("pr-trial.yml") == {"workflow_run": {"workflows": [pr_image], "types": ["completed"]}}
    inputs = set(submit["workflow_dispatch"]["inputs"])
    assert inputs == {"corpus", "task", "model", "image", "backend", "gpus", "output"}


WRITERS = {
    ("image.yml", "publish"): {"packages", "id-token", "attestations"},
    ("pr-trial.yml", "trial"): {"packages"},
    ("pr-trial.yml", "comment"): {"pull-requests"},
}


def test_publishing_jobs_alone_can_write() -> None:
    for name, path in WORKFLOWS.items():
        for job_id, job in workflow_policy.load(path)["jobs"].items():
            writes = {k for k, v in (job.get("permissions") or {}).items() if v == "write"}
            assert writes <= WRITERS.get((name, job_id), set()), (name, job_id, writes)


def test_a_pull_requests_code_builds_without_credentials_and_runs_only_in_the_sandbox() -> None:
    build = workflow_policy.load(WORKFLOWS["pr-image.yml"])["jobs"]["build"]
    assert build["if"] == "github.event.label.name == 'run-job'"
    assert "environment" not in build and "permissions" not in build
    assert not workflow_policy.secrets_of(build)
    trial = workflow_policy.load(WORKFLOWS["pr-trial.yml"])["jobs"]["trial"]
    assert trial["environment"] == "pr-trial"
    runs = [s.get("run", "") for s in trial["steps"]]
    assert runs[2] == workflow_policy.LOCKED_INSTALL and runs[3].startswith(workflow_policy.TRIAL_CHECK)
    assert any("invoke ci.image-ref" in r and "--pr" in r for r in runs)


def test_main_attests_what_it_pushes_and_production_runs_that_digest() -> None:
    publish = workflow_policy.load(WORKFLOWS["image.yml"])["jobs"]["publish"]
    steps = publish["steps"]
    attest = [s for s in steps if str(s.get("uses", "")).startswith("actions/attest-build-provenance@")]
    pushed = next(s for s in steps if s.get("id") == "pushed")
    assert pushed["run"].startswith("invoke push ")
    assert attest and attest[0]["with"]["subject-digest"] == "${{ steps.pushed.outputs.digest }}"
    assert not [s for s in steps if "--cache-ref" in s.get("run", "")]
    # A release tag's run goes through the `release` environment.
    assert publish["environment"] == "${{ github.ref_type == 'tag' && 'release' || 'image' }}"
    dispatch = workflow_policy.load(WORKFLOWS["submit.yml"])["jobs"]["dispatch"]
    verify = next(s for s in dispatch["steps"] if s.get("run", "").startswith(workflow_policy.VERIFY_IMAGE))
    submit = next(s for s in dispatch["steps"] if s.get("run", "").startswith("invoke submit"))
    assert submit["env"]["IMAGE"] == f"${{{{ steps.{verify['id']}.outputs.ref }}}}"


def test_dispatch_reruns_attach_and_the_rayjob_backend_gets_no_ray_token() -> None:
    job = workflow_policy.load(WORKFLOWS["submit.yml"])["jobs"]["dispatch"]
    assert "github.run_attempt" not in workflow_policy.read_contexts(job["env"]["JOB_NAME"])
    for step in job["steps"]:
        token = (step.get("env") or {}).get("RAY_AUTH_TOKEN")
        assert token in (None, "${{ inputs.backend == 'address' && secrets.RAY_AUTH_TOKEN || '' }}"), token


def test_e2e_dumps_the_cluster_on_failure() -> None:
    steps = workflow_policy.load(WORKFLOWS["e2e-kind.yml"])["jobs"]["kind"]["steps"]
    dump = [s for s in steps if "invoke ci.kind-dump" in s.get("run", "")]
    upload = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert dump and upload and dump[0]["if"] == upload[0]["if"] == "failure()"
    assert upload[0]["with"]["path"].rstrip("/") == dump[0]["run"].split("--out ")[1].strip()


def test_ci_runs_the_readme_test_command() -> None:
    steps = workflow_policy.load(WORKFLOWS["ci.yml"])["jobs"]["test"]["steps"]
    readme = (versions.ROOT / "README.md").read_text()
    command = re.search(r"^pip install -r requirements-dev.txt && invoke test$", readme, re.MULTILINE)
    assert command, "the README no longer shows its test command"
    assert command.group(0) in [s.get("run", "").strip() for s in steps]
    # .ci/run, the one script CI here runs, calls the same command (quietly).
    assert command.group(0).replace("install ", "install -q ") in (versions.ROOT / ".ci" / "run").read_text()


def test_docs_name_every_workflow_input_secret_and_variable() -> None:
    section = (versions.ROOT / "docs" / "github-actions.md").read_text()
    texts = "".join(path.read_text() for path in WORKFLOWS.values())
    names = set(WORKFLOWS)
    names |= set(_triggers("submit.yml")["workflow_dispatch"]["inputs"])
    names |= set(re.findall(r"secrets\.([A-Z0-9_]+)", texts)) - {"GITHUB_TOKEN"}
    names |= set(re.findall(r"vars\.([A-Z0-9_]+)", texts))
    # An environment chosen by an expression (`cond && 'a' || 'b'`) names each choice after && or ||.
    names |= {
        name
        for path in WORKFLOWS.values()
        for job in workflow_policy.load(path)["jobs"].values()
        if "environment" in job
        for name in (re.findall(r"(?:&&|\|\|)\s*'([\w-]+)'", job["environment"]) or [job["environment"]])
    }
    assert not [n for n in sorted(names) if f"`{n}`" not in section]


def test_python_is_pinned_once_and_matches_pyproject() -> None:
    pinned = (versions.ROOT / ".python-version").read_text().strip()
    requires = tomllib.loads((versions.ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={pinned}"
    for path in WORKFLOWS.values():
        assert not re.search(r"python-version:\s", path.read_text()), path.name


def _invoke_calls() -> list[tuple[str, str, set[str]]]:
    calls = []
    for name, path in WORKFLOWS.items():
        for job in workflow_policy.load(path)["jobs"].values():
            for step in job["steps"]:
                for command in workflow_policy.commands(step.get("run", "")):
                    if command.startswith("invoke "):
                        flags = set(re.findall(r"(?:^|[\s+{])--([a-z][a-z0-9-]*)", command))
                        calls.append((name, command.split()[1], flags))
    return calls


def test_every_invoked_task_and_flag_exists() -> None:
    import tasks

    missing = set()
    for _name, task_name, flags in _invoke_calls():
        if task_name not in tasks.ns.task_names:
            missing.add(task_name)
            continue
        task = tasks.ns[task_name]
        known = {arg.name.replace("_", "-") for arg in task.get_arguments()}
        missing |= {f"{task_name} --{flag}" for flag in flags - known}
    assert missing <= set(PENDING), sorted(missing - set(PENDING))


def test_a_trial_has_a_deadline_and_its_rayjob_is_always_deleted() -> None:
    jobs = workflow_policy.load(WORKFLOWS["pr-trial.yml"])["jobs"]
    trial = jobs["trial"]
    deadline = trial["env"]["INVOKE_RAYBAKE_ACTIVE_DEADLINE_S"].split("||")[1].strip(" }")
    assert int(deadline) < trial["timeout-minutes"] * 60
    names = [s.get("name", "") for s in trial["steps"]]
    cleanup = trial["steps"][-1]
    assert cleanup["run"] == 'invoke stop --job "$JOB_NAME" --backend rayjob --delete'
    assert cleanup["if"].startswith("always()") and names.index("Result to the job summary") < len(names) - 1
    # The comment is its own job: only it may write to pull requests, and only main's code runs there.
    comment = jobs["comment"]
    assert comment["needs"] == "trial" and comment["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "pull-requests" not in {k for k, v in trial["permissions"].items() if v == "write"}
