"""Which image production may run: one that main's image.yml built and attested, named by digest.

GitHub's registry takes pushes from any branch's workflow that asks for `packages: write`, so a
tag (even `sha-<commit>`) says nothing about who pushed it. A build provenance attestation
(actions/attest-build-provenance in image.yml) is signed with the identity of the workflow run
that made it: its workflow file and its ref, which a branch cannot forge. `gh attestation verify`
checks that identity; the digest it verified is what the job then runs, so a tag moved after the
check changes nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from raybake.errors import ExitCode, RaybakeError

SIGNER_WORKFLOW = ".github/workflows/image.yml"
SOURCE_REF = "refs/heads/main"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def verify_command(image: str, *, repository: str) -> list[str]:
    return [
        "gh",
        "attestation",
        "verify",
        f"oci://{image}",
        "--repo",
        repository,
        "--signer-workflow",
        f"{repository}/{SIGNER_WORKFLOW}",
        "--source-ref",
        SOURCE_REF,
        "--deny-self-hosted-runners",
        "--format",
        "json",
    ]


def repository_of(image: str) -> str:
    """REGISTRY/OWNER/NAME of a reference with a tag, a digest or both."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if len(last) == 2 and ":" in last[1]:
        name = f"{last[0]}/{last[1].split(':', 1)[0]}"
    return name


def verified_digest(results: Any) -> str:
    """The one sha256 digest the verified attestations name (gh's --format json output)."""
    digests = {
        subject.get("digest", {}).get("sha256", "")
        for result in results or []
        for subject in ((result.get("verificationResult") or {}).get("statement") or {}).get("subject") or []
    }
    if len(digests) != 1 or not _DIGEST.match(next(iter(digests))):
        raise RaybakeError(f"the attestations name {sorted(digests)!r}, not one sha256 digest", ExitCode.REFUSED)
    return f"sha256:{digests.pop()}"


def verify(image: str, *, repository: str) -> str:
    """`REGISTRY/OWNER/NAME@sha256:...` of `image` once its attestation says main's image.yml built it."""
    if not repository:
        raise RaybakeError("no repository to verify against (GITHUB_REPOSITORY is empty)", ExitCode.REFUSED)
    try:
        done = subprocess.run(verify_command(image, repository=repository), capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RaybakeError(f"`gh attestation verify` did not run: {exc}", ExitCode.UNREACHABLE) from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise RaybakeError(
            f"{image!r} has no attestation from {repository}'s {SIGNER_WORKFLOW} on {SOURCE_REF} ({reason}): "
            "production runs only images that main's image.yml built",
            ExitCode.REFUSED,
        )
    try:
        results = json.loads(done.stdout)
    except ValueError:
        raise RaybakeError("`gh attestation verify --format json` printed no JSON", ExitCode.FAILED) from None
    digest = verified_digest(results)
    pinned = image.split("@", 1)
    if len(pinned) == 2 and pinned[1] != digest:
        raise RaybakeError(f"{image!r} was given by digest, but {digest} is the one attested", ExitCode.REFUSED)
    return f"{repository_of(image)}@{digest}"
