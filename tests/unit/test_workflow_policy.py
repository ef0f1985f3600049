"""The workflow rules can fail: one bad workflow per rule (fixtures/bad-workflows), each breaking
only that rule, and the expression parsing that makes a guard a guard.

A fixture whose first line says `# breaks: zizmor <audit>` is a generic rule zizmor keeps: zizmor,
run as `invoke dev.lint` runs it, reports that audit alone, and the project's own rules nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from raybake import versions
from raybake.errors import RaybakeError
from tools import expressions, lint, workflow_policy

BAD = Path(__file__).parent / "fixtures" / "bad-workflows"
FIXTURES = sorted(BAD.glob("*.yml"))


def _copy(path: Path, tmp_path: Path) -> Path:
    # The Ray pin is read, not copied, so the fixture stays right when requirements.txt moves.
    copy = tmp_path / path.name
    copy.write_text(path.read_text().replace("RAY_VERSION", versions.ray_version()))
    return copy


def zizmor_audits(path: Path) -> set[str]:
    """The audits zizmor reports on one workflow, with the project's configuration."""
    done = subprocess.run(
        [*lint.zizmor(versions.ROOT, [str(path)]), "--format", "json"], capture_output=True, text=True, check=False
    )
    assert done.stdout.startswith("["), done.stderr
    return {finding["ident"] for finding in json.loads(done.stdout)}


def test_every_rule_has_its_fixture():
    assert len(FIXTURES) >= 25


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_each_bad_workflow_breaks_exactly_its_rule(path: Path, tmp_path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# breaks: ")
    copy = _copy(path, tmp_path)
    found = [str(p) for p in workflow_policy.check(copy)]
    if expected.startswith("zizmor "):
        assert found == []
        assert zizmor_audits(copy) == {expected.removeprefix("zizmor ")}
    else:
        assert len(found) == 1 and expected in found[0], "\n".join(found)


def test_commands_split_lines_continuations_and_chains() -> None:
    script = "# a comment\ninvoke a \\\n  --flag x\n\npip install -r requirements-dev.txt && invoke test\n"
    assert list(workflow_policy.commands(script)) == [
        "invoke a --flag x",
        "pip install -r requirements-dev.txt",
        "invoke test",
    ]


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ("github.event.workflow_run.conclusion == 'success'", True),
        ("${{ github.event.workflow_run.conclusion == 'success' }}", True),
        (
            "'success' == github.event.workflow_run.conclusion && github.event.workflow_run.event == 'pull_request'",
            True,
        ),
        ("(github.event.workflow_run.conclusion == 'SUCCESS') && !cancelled()", True),
        ("github.event.workflow_run.conclusion == 'success' || true", False),
        ("true || github.event.workflow_run.conclusion == 'success'", False),
        ("!(github.event.workflow_run.conclusion == 'success')", False),
        ("github.event.workflow_run.conclusion != 'success'", False),
        ("contains('github.event.workflow_run.conclusion == success', 'x')", False),
        ("always()", False),
    ],
)
def test_a_guard_holds_only_when_the_whole_condition_needs_it(condition: str, holds: bool) -> None:
    assert expressions.requires(condition, workflow_policy.RUN_PASSED) is holds


def test_the_same_repository_guard_ored_with_true_guards_nothing() -> None:
    guard = "github.event.pull_request.head.repo.full_name == github.repository"
    assert expressions.requires(f"github.event.label.name == 'run-job' && {guard}", guard)
    assert not expressions.requires(f"{guard} || true", guard)


def test_expressions_parse_calls_indexes_and_filters() -> None:
    node = expressions.parse("contains(github.event.pull_request.labels.*.name, 'run-job') && fromJSON(x.y)[0].z")
    assert expressions.contexts(node) >= {"github.event.pull_request.labels.*.name", "x.y"}
    with pytest.raises(RaybakeError, match="cannot parse expression"):
        expressions.parse("github.ref == 'a' &&")


def test_github_token_and_local_actions_are_allowed_outside_pull_requests(tmp_path: Path) -> None:
    path = tmp_path / "w.yml"
    path.write_text(
        "on: push\npermissions:\n  contents: read\nconcurrency:\n  group: g\njobs:\n  j:\n"
        "    runs-on: ubuntu-latest\n    timeout-minutes: 5\n    steps:\n      - uses: ./.github/actions/local\n"
        "      - run: invoke ci.pr-comment --pr 1 --body-file x\n        env:\n"
        "          GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n"
    )
    assert workflow_policy.check(path) == []
    # zizmor's audits that took over these two rules keep the same exceptions.
    assert not zizmor_audits(path) & {"secrets-outside-env", "unpinned-uses"}
