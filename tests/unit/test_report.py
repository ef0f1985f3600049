"""Job and image reports for the job summary and the pull request comment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from raybake import report
from raybake.errors import RaybakeError

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = {
    "status": "complete",
    "counts": {"documents": 120, "ok": 118, "error": 2, "missing": 0, "truncated": 5},
    "timings": {"wall_seconds": 4.0},
    "model": {"name": "sentence-transformers/all-MiniLM-L6-v2"},
    "image": "registry.example/o/r:sha-abc",
    "git_sha": "abc",
}


def test_job_report_has_counts_throughput_and_links() -> None:
    text = report.job_markdown(
        job="j1", status="SUCCEEDED", manifest=MANIFEST, output="s3://b/out", links={"logs": "https://l", "none": ""}
    )
    assert "✅ raybake job `j1`: `SUCCEEDED`" in text
    assert "| 120 | 118 | 2 | 0 | 5 | 4.0 | 30.0 |" in text
    assert "- outputs: `s3://b/out`" in text and "- [logs](https://l)" in text and "[none]" not in text


def test_job_report_without_a_manifest_says_why() -> None:
    text = report.job_markdown(job="j1", status="FAILED", note="manifest not readable")
    assert "❌" in text and "> `manifest not readable`" in text and "| documents" not in text


def test_manifest_fields_are_inert_in_the_comment() -> None:
    """A pull request's job writes its own manifest: its fields must not mention, link, inject
    HTML, break the table or close their code span."""
    hostile = {
        **MANIFEST,
        "counts": {**MANIFEST["counts"], "error": "2 | <img src=x onerror=alert(1)>"},
        "model": {"name": "x` @octo-org/maintainers [click](https://evil.invalid) ``y"},
        "git_sha": "abc\n\n## Approved by @admin",
    }
    text = report.job_markdown(job="j1", status="SUCCEEDED", manifest=hostile, note="@admin <b>look</b>")
    assert "Model ```x` @octo-org/maintainers [click](https://evil.invalid) ``y```" in text
    assert "`2 \\| <img src=x onerror=alert(1)>`" in text
    assert "git `abc ## Approved by @admin`." in text and "\n## " not in text
    assert "> `@admin <b>look</b>`" in text
    # Outside code spans nothing of theirs is left.
    outside = re.sub(r"(`+) ?.*? ?\1", "", text)
    assert not [s for s in ("@", "<", "](") if s in outside.replace("](https://", "")], outside


def test_read_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    assert report.read_manifest(str(tmp_path / "manifest.json")) == MANIFEST
    with pytest.raises(RaybakeError, match="not readable here"):
        report.read_manifest(str(tmp_path / "absent.json"))


def test_image_digest_from_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = tmp_path / "docker"
    docker.write_text(f'#!{sys.executable}\nimport sys\nprint(\'{{"digest": "sha256:feed", "size": 1}}\')\n')
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert report.image_digest("registry.example/o/r:sha-abc") == "sha256:feed"
    text = report.image_markdown(ref="registry.example/o/r:sha-abc", digest="sha256:feed", tags=["sha-abc", "v1"])
    assert "- pull: `registry.example/o/r@sha256:feed`" in text and "- tag: `registry.example/o/r:v1`" in text


def test_image_digest_failure_says_what_to_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RaybakeError, match="is it pushed"):
        report.image_digest("x:y")


def test_invoke_summary_writes_the_step_summary_and_the_comment(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    argv = [sys.executable, "-m", "invoke", "ci.summary", "--job", "j1", "--status", "SUCCEEDED"]
    argv += ["--manifest", str(tmp_path / "manifest.json"), "--link", "logs=https://l"]
    argv += ["--comment-file", str(tmp_path / "comment.md")]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "| 120 | 118 |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "comment.md").read_text() in (tmp_path / "summary.md").read_text()
