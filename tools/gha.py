"""The GitHub Actions runner from the client's side: its files, its API and its disk.

Each function works off the runner too (a summary goes to stdout, a comment needs a token), so
the invoke tasks that call them can be tried on a laptop.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, TextIO
from urllib.parse import quote

from raybake import console
from raybake.errors import ExitCode, RaybakeError
from raybake.private import write_private

# Preinstalled toolchains on ubuntu-latest that raybake never uses: about 30 GB together.
RUNNER_BLOAT = (
    "/usr/share/dotnet",
    "/usr/local/lib/android",
    "/opt/ghc",
    "/usr/local/.ghcup",
    "/opt/hostedtoolcache/CodeQL",
    "/usr/local/share/boost",
)
# Marks raybake's pull request comment so a rerun updates it instead of adding another.
COMMENT_MARKER = "<!-- raybake:run-job -->"


def on_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def append_summary(markdown: str) -> None:
    """Add to the job summary page; off a runner, print it."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        console.line(markdown, end="")
        return
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(markdown.rstrip("\n") + "\n\n")


@contextlib.contextmanager
def commands_stopped(out: TextIO | None = None) -> Iterator[None]:
    """On a runner, no workflow command takes effect while the block runs (a job's log streams).

    The runner reads every `::command::` line of a step's output: a pull request's job that
    prints `::add-mask::`, `::error file=...::` or `::stop-commands::` would steer the step. The
    token that resumes them is random and made here, after the job started, so the log cannot
    print it."""
    if not on_actions():
        yield
        return
    stream = out or sys.stdout
    token = secrets.token_hex(16)
    stream.write(f"::stop-commands::{token}\n")
    stream.flush()
    try:
        yield
    finally:
        stream.flush()
        stream.write(f"::{token}::\n")
        stream.flush()


def _append_line(file_env: str, name: str, value: str) -> None:
    # One `name=value` line per entry: a newline in a value could forge another entry.
    if "\n" in value or "\r" in value:
        raise RaybakeError(f"refusing to write a multi-line value for {name!r} to ${file_env}", ExitCode.REFUSED)
    target = os.environ.get(file_env)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(f"{name}={value}\n")


def export_env(name: str, value: str) -> None:
    """Set a variable for the job's later steps (GITHUB_ENV)."""
    _append_line("GITHUB_ENV", name, value)


def set_output(name: str, value: str) -> None:
    """Set a step output (GITHUB_OUTPUT) for later steps' `steps.<id>.outputs.<name>`."""
    _append_line("GITHUB_OUTPUT", name, value)


def run_url() -> str:
    """This workflow run's page, where its logs are; empty off a runner."""
    parts = [os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    return f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}" if all(parts) else ""


def write_kubeconfig(out: Path, *, source_env: str = "RAYBAKE_KUBECONFIG") -> Path:
    """Write the kubeconfig held in an environment variable (YAML or base64) to a private file.

    Later steps see KUBECONFIG pointing at it. The content is never printed.
    """
    content = os.environ.get(source_env, "")
    if not content.strip():
        raise RaybakeError(
            f"${source_env} is empty: set the repository secret and the environment that holds it", ExitCode.REFUSED
        )
    if not content.lstrip().startswith(("apiVersion", "kind", "clusters", "{", "---")):
        try:
            # Plain `base64` wraps at 76 columns: the line breaks are layout, not data.
            content = base64.b64decode("".join(content.split()), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise RaybakeError(f"${source_env} is neither kubeconfig YAML nor base64 of it", ExitCode.REFUSED) from None
    write_private(out, content)
    export_env("KUBECONFIG", str(out.resolve()))
    return out


class ImageRef(NamedTuple):
    registry: str  # REGISTRY/OWNER: raybake.registry, what `invoke build` names images under
    name: str  # raybake.image_name
    ref: str  # the full reference a job runs

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.name}"


def image_ref(*, repository: str, given: str = "", sha: str = "", pr: int = 0) -> ImageRef:
    """Where images go and which one to run, from a tag, a digest, a full reference or nothing.

    Nothing means the image pushed for commit `sha` (tag `sha-<sha>`). Registries such as GHCR
    want lower case names, while GitHub owners and repositories may be mixed case. A pull
    request's image (`pr`) goes under NAME-pr: main's builds and caches never read that name,
    so a pull request can neither overwrite main's tags nor poison main's layer cache.
    """
    registry, _, name = repository.lower().rpartition("/")
    if pr:
        name = f"{name}-pr"
    if not registry:
        raise RaybakeError(f"image repository {repository!r} must be REGISTRY/OWNER/NAME", ExitCode.REFUSED)
    base = f"{registry}/{name}"
    if not given:
        if not sha:
            raise RaybakeError("no image given and no commit to name one after (GITHUB_SHA)", ExitCode.REFUSED)
        given = f"sha-{sha}"
    if "/" in given:
        return ImageRef(registry, name, given)
    return ImageRef(registry, name, f"{base}@{given}" if given.startswith("sha256:") else f"{base}:{given}")


def api_request(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> urllib.request.Request:
    """A GitHub REST API request with the token and the API version this code was written for."""
    return urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        },
    )


def _api(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    request = api_request(method, url, token, body)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise RaybakeError(f"GitHub API {method} {url!r} answered {exc.code}: {exc.read()[:200]!r}") from None
    except urllib.error.URLError as exc:
        raise RaybakeError(f"GitHub API {url!r} unreachable: {exc.reason}") from None


# The label that asks for a pull request's trial run (pr-image.yml, pr-trial.yml).
TRIAL_LABEL = "run-job"
# What the collaborator permission API answers for people who may push (maintain reads as write).
WRITERS = ("admin", "write")


def trial_pull_request(*, repository: str, head: str, head_sha: str, actor: str, token: str, api_url: str) -> int:
    """The open pull request a trial run is for, once its starter may start it; its number.

    `head` is OWNER:BRANCH and `head_sha` the commit its image was built from, as the
    workflow_run event reports them (a fork's pull request is not in that event). Refused: no
    such pull request at that commit, the label gone, an actor without write access, or the
    pull request's own author (who could otherwise run their code with the sandbox's credentials)."""
    base = f"{api_url.rstrip('/')}/repos/{repository}"
    pulls = _api("GET", f"{base}/pulls?state=open&per_page=100&head={quote(head, safe=':')}", token) or []
    found = [p for p in pulls if (p.get("head") or {}).get("sha") == head_sha]
    if not found:
        raise RaybakeError(f"no open pull request has {head!r} at {head_sha!r}: nothing to try", ExitCode.FAILED)
    pull = found[0]
    number, author = int(pull["number"]), (pull.get("user") or {}).get("login", "")
    if TRIAL_LABEL not in {label.get("name") for label in pull.get("labels") or []}:
        raise RaybakeError(f"pull request #{number} no longer carries the {TRIAL_LABEL!r} label", ExitCode.FAILED)
    if actor.lower() == author.lower():
        raise RaybakeError(
            f"{actor!r} opened pull request #{number}: its author cannot start its trial run; "
            f"another maintainer adds the {TRIAL_LABEL!r} label",
            ExitCode.FAILED,
        )
    permission = _api("GET", f"{base}/collaborators/{quote(actor)}/permission", token) or {}
    if permission.get("permission") not in WRITERS:
        raise RaybakeError(
            f"{actor!r} has {permission.get('permission', 'no')!r} access to {repository}: "
            "only people with write access start trial runs",
            ExitCode.FAILED,
        )
    export_env("PR_NUMBER", str(number))
    set_output("number", str(number))
    return number


def comment_on_pr(*, repository: str, number: int, body: str, token: str, api_url: str) -> str:
    """Post raybake's comment on a pull request, or update the one a former run posted; its URL."""
    if not token:
        raise RaybakeError("no GitHub token: set GITHUB_TOKEN (the job needs `pull-requests: write`)", ExitCode.REFUSED)
    body = f"{COMMENT_MARKER}\n{body}"
    comments_url = f"{api_url.rstrip('/')}/repos/{repository}/issues/{number}/comments"
    existing = _api("GET", f"{comments_url}?per_page=100", token) or []
    # Only a bot's comment is ours: anyone can paste the marker into a comment of their own.
    ours = next(
        (c for c in existing if COMMENT_MARKER in (c.get("body") or "") and (c.get("user") or {}).get("type") == "Bot"),
        None,
    )
    if ours:
        posted = _api("PATCH", ours["url"], token, {"body": body})
    else:
        posted = _api("POST", comments_url, token, {"body": body})
    return posted.get("html_url", "")


def free_disk(
    *, paths: tuple[str, ...] = RUNNER_BLOAT, force: bool = False, prune_images: bool = True
) -> tuple[int, int]:
    """Delete the runner's unused toolchains and unused images; free bytes on / before, after.

    Refused off a GitHub-hosted runner unless forced: it deletes system directories.
    """
    if not (on_actions() or force):
        raise RaybakeError(
            "free-disk deletes system directories; it runs on GitHub runners only (or --force)", ExitCode.REFUSED
        )
    before = shutil.disk_usage("/").free
    present = [p for p in paths if Path(p).exists()]
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if present:
        subprocess.run([*sudo, "rm", "-rf", "--", *present], check=False)
    if prune_images and shutil.which("docker"):
        subprocess.run(["docker", "image", "prune", "--all", "--force"], check=False, capture_output=True)
    return before, shutil.disk_usage("/").free
