"""The workflow rules can fail: a fixture that breaks each rule once, and edge cases of each."""

from __future__ import annotations

from pathlib import Path

import pytest

from raybake import versions
from raybake.ci import workflow_policy

FIXTURE = Path(__file__).parent / "fixtures" / "bad-workflow.yml"


@pytest.fixture()
def bad(tmp_path: Path) -> list[str]:
    # The Ray pin is read, not copied, so the fixture stays right when requirements.txt moves.
    path = tmp_path / "bad.yml"
    path.write_text(FIXTURE.read_text().replace("RAY_VERSION", versions.ray_version()))
    return [str(p) for p in workflow_policy.check(path)]


@pytest.mark.parametrize(
    "expected",
    [
        "top-level permissions must be exactly `contents: read`",
        "no concurrency group",
        "pull_request_target runs with secrets",
        "build: no timeout-minutes",
        "checkout without persist-credentials: false",
        "setup-python must read .python-version",
        "Injected: `${{ }}` inside run:",
        "run: command 'pip install ray==",
        "run: command 'docker build -t x .' is not an invoke task",
        "outside a protected environment",
        "env: secrets ['RAYBAKE_KUBECONFIG'] in a shared env:",
        "write scopes ['packages'] on pull_request without",
        "actions/checkout@v4: not pinned to a full commit SHA",
        "a26af69be951a213d495a4c3e4e4022e16d87065: not pinned to a full commit SHA with a `# vX.Y.Z`",
        f"ray=={versions.ray_version()} is pinned in requirements.txt",
    ],
)
def test_each_rule_reports_its_breach(bad: list[str], expected: str) -> None:
    assert any(expected in problem for problem in bad), "\n".join(bad)


def test_commands_split_lines_continuations_and_chains() -> None:
    script = "# a comment\ninvoke a \\\n  --flag x\n\npip install -r requirements-dev.txt && invoke test\n"
    assert list(workflow_policy.commands(script)) == [
        "invoke a --flag x",
        "pip install -r requirements-dev.txt",
        "invoke test",
    ]


def _workflow(tmp_path: Path, job: str) -> list[str]:
    path = tmp_path / "w.yml"
    path.write_text(
        "on: [pull_request, workflow_dispatch]\npermissions:\n  contents: read\nconcurrency:\n  group: g\njobs:\n" + job
    )
    return [str(p) for p in workflow_policy.check(path)]


SECRET_JOB = """  j:
    if: {condition}
    runs-on: ubuntu-latest
    environment: production
    timeout-minutes: 5
    steps:
      - run: invoke submit
        env:
          T: ${{{{ secrets.RAY_AUTH_TOKEN }}}}
"""


@pytest.mark.parametrize(
    ("condition", "safe"),
    [
        ("github.event.pull_request.head.repo.full_name == github.repository", True),
        ("github.event_name == 'workflow_dispatch'", True),
        ("github.event_name == 'workflow_dispatch' || github.event_name == 'pull_request'", False),
        ("github.event.label.name == 'run-job'", False),
    ],
)
def test_secrets_on_pull_requests_need_the_same_repository_guard(tmp_path: Path, condition: str, safe: bool) -> None:
    problems = _workflow(tmp_path, SECRET_JOB.format(condition=f'"{condition}"'))
    assert (problems == []) is safe, problems


def test_github_token_and_local_actions_are_allowed(tmp_path: Path) -> None:
    job = """  j:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    steps:
      - uses: ./.github/actions/local
      - run: invoke ci.pr-comment --pr 1 --body-file x
        env:
          GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}
"""
    assert _workflow(tmp_path, job) == []
