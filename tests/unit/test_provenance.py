"""`invoke ci.verify-image`: the identity it asks gh to check, and the digest it hands on.

gh is GitHub's own client of its attestation API: a stand-in `gh` on PATH records its arguments
and answers with the recorded output of `gh attestation verify --format json`
(fixtures/github/attestation-verify.json), or fails as gh does when no attestation matches.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from raybake.errors import RaybakeError
from tools import provenance

RECORDED = Path(__file__).parent / "fixtures" / "github" / "attestation-verify.json"
DIGEST = (
    "sha256:" + json.loads(RECORDED.read_text())[0]["verificationResult"]["statement"]["subject"][0]["digest"]["sha256"]
)
REPO = "octo-org/raybake"
IMAGE = "registry.invalid/octo-org/raybake"


@pytest.fixture
def gh(tmp_path: Path, monkeypatch) -> Path:
    """A `gh` that logs its argv to argv.json and answers from answer.json (or fails with stderr)."""
    script = tmp_path / "gh"
    script.write_text(
        "#!/usr/bin/env python3\nimport json, pathlib, sys\nhere = pathlib.Path(__file__).parent\n"
        "(here / 'argv.json').write_text(json.dumps(sys.argv[1:]))\n"
        "if (here / 'fail').exists():\n    sys.exit('Error: verifying with issuer: no matching attestations')\n"
        "print((here / 'answer.json').read_text())\n"
    )
    script.chmod(0o755)
    (tmp_path / "answer.json").write_text(RECORDED.read_text())
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_a_tag_main_attested_becomes_its_digest(gh: Path):
    assert provenance.verify(f"{IMAGE}:sha-abc", repository=REPO) == f"{IMAGE}@{DIGEST}"
    argv = json.loads((gh / "argv.json").read_text())
    assert argv[:3] == ["attestation", "verify", f"oci://{IMAGE}:sha-abc"]
    flags = {
        flag: argv[i + 1] for i, flag in enumerate(argv) if flag in ("--repo", "--signer-workflow", "--source-ref")
    }
    assert flags["--repo"] == REPO
    assert flags["--signer-workflow"] == f"{REPO}/.github/workflows/image.yml"
    assert flags["--source-ref"] == "refs/heads/main"
    assert "--deny-self-hosted-runners" in argv


def test_an_image_without_mains_attestation_is_refused(gh: Path):
    (gh / "fail").touch()
    with pytest.raises(RaybakeError, match=r"no attestation from octo-org/raybake's .*image.yml on refs/heads/main"):
        provenance.verify(f"{IMAGE}:sha-abc", repository=REPO)


def test_a_digest_that_is_not_the_attested_one_is_refused(gh: Path):
    with pytest.raises(RaybakeError, match="is the one attested"):
        provenance.verify(f"{IMAGE}@sha256:{'0' * 64}", repository=REPO)
    assert provenance.verify(f"{IMAGE}@{DIGEST}", repository=REPO) == f"{IMAGE}@{DIGEST}"


def test_attestations_that_name_no_single_digest_are_refused(gh: Path):
    answer = json.loads(RECORDED.read_text())
    other = json.loads(json.dumps(answer[0]))
    other["verificationResult"]["statement"]["subject"][0]["digest"]["sha256"] = "1" * 64
    (gh / "answer.json").write_text(json.dumps([*answer, other]))
    with pytest.raises(RaybakeError, match="not one sha256 digest"):
        provenance.verify(f"{IMAGE}:sha-abc", repository=REPO)


@pytest.mark.parametrize(
    ("ref", "repository"),
    [
        ("registry.invalid/o/r:sha-1", "registry.invalid/o/r"),
        ("registry.invalid:5000/o/r@sha256:" + "a" * 64, "registry.invalid:5000/o/r"),
        ("registry.invalid:5000/o/r:t@sha256:" + "a" * 64, "registry.invalid:5000/o/r"),
    ],
)
def test_the_repository_of_a_reference(ref: str, repository: str):
    assert provenance.repository_of(ref) == repository
