"""The tasks only a workflow runs (`ci.*`): job and image summaries, pull-request trials and
comments, image references, archives and attestations, the runner's disk and kubeconfig, and
GitHub's settings. Every value they read from an event is data: docs/github-actions.md."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from invoke import Context, Exit

from raybake.backends import BACKENDS
from raybake.errors import ExitCode, RaybakeError
from tasks._front import CLUSTER, VARIANT, WHICH_BUILT, backend, flags, renamed, say, settings, task
from tools import gha


@task(
    renamed(
        flags("backend", "address", of=CLUSTER),
        backend=f"{' | '.join(BACKENDS)}, to ask the status",
        address="job submission URL, to ask the status",
    ),
    help={
        "job": "job id (the name given to invoke submit --name)",
        "manifest": "path or URI of the job's manifest.json, for counts and throughput",
        "output": "where the job's outputs are, shown as is",
        "status": "the job's status when known; else asked from the backend",
        "link": "LABEL=URL to list, e.g. logs=https://...; repeatable",
        "comment-file": "also write the Markdown here (for invoke ci.pr-comment)",
    },
    iterable=["link"],
)
def summary(
    c: Context,
    job: str,
    manifest: str | None = None,
    output: str | None = None,
    status: str | None = None,
    link: list[str] | None = None,
    comment_file: str | None = None,
    **overrides: Any,
) -> None:
    """A job's status, counts, throughput and links in the GitHub job summary (stdout elsewhere)."""
    from raybake import report
    from raybake.submit import newest_attempt

    # A report runs after failures too: what it cannot learn becomes a note, never an exit.
    notes: list[str] = []
    if status is None:
        try:
            with backend(c, **overrides) as chosen:
                status = chosen.status(newest_attempt(chosen, job)).status
        except RaybakeError as exc:
            status = "UNKNOWN"
            notes.append(str(exc))
    data = None
    if manifest:
        try:
            data = report.read_manifest(manifest)
        except RaybakeError as exc:
            notes.append(str(exc))
    links = dict(item.split("=", 1) for item in link or [] if "=" in item)
    links.setdefault("workflow run", gha.run_url())
    markdown = report.job_markdown(
        job=job, status=status, manifest=data, output=output, links=links, note="; ".join(notes) or None
    )
    gha.append_summary(markdown)
    if comment_file:
        Path(comment_file).parent.mkdir(parents=True, exist_ok=True)
        Path(comment_file).write_text(markdown)


@task(help={"pr": "pull request number", "body-file": "Markdown to post, e.g. from invoke ci.summary --comment-file"})
def pr_comment(c: Context, pr: str, body_file: str) -> None:
    """Post the run's result on the pull request, or update the comment an earlier run posted.

    Uses GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_API_URL as a workflow sets them.
    """

    if not str(pr).isdigit():
        raise RaybakeError(f"--pr must be a pull request number, got {pr!r}", ExitCode.REFUSED)
    url = gha.comment_on_pr(
        repository=os.environ.get("GITHUB_REPOSITORY", ""),
        number=int(pr),
        body=Path(body_file).read_text(),
        token=os.environ.get("GITHUB_TOKEN", ""),
        api_url=os.environ.get("GITHUB_API_URL", "https://api.github.com"),
    )
    say(f"commented {url}")


@task(
    help={
        "repository": "REGISTRY/OWNER/NAME, e.g. $REGISTRY/$GITHUB_REPOSITORY (lower-cased here)",
        "ref": "a tag, a sha256: digest or a full reference; empty: sha-$GITHUB_SHA",
        "pr": "a pull request's number: the image goes under NAME-pr, which main and releases never read",
    }
)
def image_ref(c: Context, repository: str, ref: str = "", pr: int = 0) -> None:
    """Print the full image reference; set step outputs `registry`, `name`, `repository`, `ref`.

    On a runner, later steps also get INVOKE_RAYBAKE_REGISTRY and INVOKE_RAYBAKE_IMAGE_NAME, so
    `invoke build` and `invoke push` name the image there without a flag.
    """

    image = gha.image_ref(repository=repository, given=ref, sha=os.environ.get("GITHUB_SHA", ""), pr=int(pr))
    for key, value in (*image._asdict().items(), ("repository", image.repository)):
        gha.set_output(key, value)
    gha.export_env("INVOKE_RAYBAKE_REGISTRY", image.registry)
    gha.export_env("INVOKE_RAYBAKE_IMAGE_NAME", image.name)
    print(image.ref)


@task(
    help={
        "image": "a pushed image reference, e.g. REGISTRY/OWNER/raybake:TAG",
        "tag": "another tag the image carries, listed in the summary; repeatable",
    },
    iterable=["tag"],
)
def image_summary(c: Context, image: str, tag: list[str] | None = None) -> None:
    """Look up a pushed image's digest; write it to the job summary and the step output `digest`."""
    from raybake import report

    digest = report.image_digest(image)
    gha.append_summary(report.image_markdown(ref=image, digest=digest, tags=list(tag or [])))
    gha.set_output("digest", digest)
    print(digest)


@task(help={"image": "the image to run: a tag or a digest reference, e.g. the output of `invoke ci.image-ref`"})
def verify_image(c: Context, image: str) -> None:
    """Refuse an image that main's image.yml did not build and attest; print it by its verified digest.

    Runs `gh attestation verify` (GH_TOKEN; registry login for a private package) and sets the step
    outputs `ref` (REGISTRY/OWNER/NAME@sha256:...) and `digest` for the steps that run it."""
    from tools import provenance

    ref = provenance.verify(image, repository=os.environ.get("GITHUB_REPOSITORY", ""))
    gha.set_output("ref", ref)
    gha.set_output("digest", ref.rsplit("@", 1)[1])
    print(ref)


@task(
    WHICH_BUILT,
    help={
        "out": "the gzip archive to write (e.g. $RUNNER_TEMP/pr-image/image.tar.gz)",
    },
)
def image_save(c: Context, out: str, **overrides: Any) -> None:
    """Save the last built image as an archive: a pull request's build hands it on without credentials."""
    from raybake.image import build as image

    given = settings(c, **overrides)
    say(f"saved {image.save(given, variant=given.variant, out=Path(out))}")


@task(
    renamed((VARIANT,), variant="which variant the loaded image stands for: cuda or cpu (default: cuda)"),
    help={
        "file": "the archive `invoke ci.image-save` wrote",
    },
)
def image_load(c: Context, file: str, **overrides: Any) -> None:
    """Load an image archive and name it under raybake.registry/image_name by its id, for `invoke push`."""
    from raybake.image import build as image

    given = settings(c, **overrides)
    image.load(given, variant=given.variant, archive=Path(file))


@task(help={"out": "where to write the kubeconfig (mode 0600)", "source-env": "variable holding it (YAML or base64)"})
def kubeconfig(c: Context, out: str, source_env: str = "RAYBAKE_KUBECONFIG") -> None:
    """Write the cluster's kubeconfig from a secret's variable; later workflow steps get KUBECONFIG."""

    say(f"kubeconfig written to {gha.write_kubeconfig(Path(out), source_env=source_env)}")


@task(help={"force": "run off a GitHub runner too (deletes system directories)"})
def free_disk(c: Context, force: bool = False) -> None:
    """Free the runner's disk for image builds: unused toolchains and unused images go."""

    before, after = gha.free_disk(force=force)
    say(f"free disk {before / 2**30:.1f} GiB -> {after / 2**30:.1f} GiB")


@task(
    help={
        "base-image": "make a stand-in of this name (default: rayproject/ray's CPU image where it can be "
        "pulled, else the stand-in raybake-base/debian:bookworm)"
    }
)
def docker_setup(c: Context, base_image: str = "") -> None:
    """Start a Docker engine and make the CPU base image where no registry is reachable (CI, as root)."""
    c.run(shlex.join(["scripts/docker-engine.sh", *([base_image] if base_image else [])]), pty=False)


@task(
    help={
        "head": "OWNER:BRANCH of the pull request's head (github.event.workflow_run.head_*)",
        "head-sha": "the commit its image was built from (github.event.workflow_run.head_sha)",
        "actor": "who started the run (github.event.workflow_run.triggering_actor.login)",
    }
)
def pr_trial_check(c: Context, head: str, head_sha: str, actor: str) -> None:
    """Find the pull request of a trial run and refuse it unless a writer other than its author asked.

    Later steps get PR_NUMBER. Needs GITHUB_TOKEN (pull requests and collaborators readable)."""

    number = gha.trial_pull_request(
        repository=os.environ.get("GITHUB_REPOSITORY", ""),
        head=head,
        head_sha=head_sha,
        actor=actor,
        token=os.environ.get("GITHUB_TOKEN", ""),
        api_url=os.environ.get("GITHUB_API_URL", "https://api.github.com"),
    )
    say(f"trial run of pull request #{number}, asked for by {actor}")


@task(help={"repository": "OWNER/NAME (default: $GITHUB_REPOSITORY)"})
def github_settings(c: Context, repository: str = "") -> None:
    """Check the GitHub settings the workflows rely on (environments, reviewers, branches, secrets).

    Reads them with $GITHUB_TOKEN (a repository admin's) and lists what is missing; exit 1 if any."""
    from tools import github_settings as settings_check

    repository = repository or os.environ.get("GITHUB_REPOSITORY", "")
    if not repository:
        raise RaybakeError("no repository: pass --repository OWNER/NAME", ExitCode.REFUSED)
    fetch = settings_check.api_fetch(
        token=os.environ.get("GITHUB_TOKEN", ""), api_url=os.environ.get("GITHUB_API_URL", "https://api.github.com")
    )
    missing = settings_check.check(fetch, repository)
    for line in missing:
        print(f"missing: {line}")
    if missing:
        raise Exit(
            f"raybake: {len(missing)} setting(s) of {repository} missing (docs/github-actions.md)", code=ExitCode.FAILED
        )
    say(f"{repository} has every setting the workflows rely on")


@task(
    help={
        "out": "directory for the dump (uploaded as an artifact by e2e-kind.yml)",
        "context": "kubeconfig context (default: the current one)",
    }
)
def kind_dump(c: Context, out: str = "kind-dump", context: str | None = None) -> None:
    """Save operator, head, worker and submitter logs and `kubectl describe` of the RayJobs.

    Never fails on a missing pod or resource: it runs after a failure to explain it.
    """
    from raybake.kube.kind_debug import dump

    written = dump(Path(out), context=context)
    say(f"{len(written)} file(s) under {out}/")
