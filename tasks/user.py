"""The tasks a researcher runs: a job on a cluster (submit and what follows it), a team's
cluster, the image, and a local cluster of containers."""

from __future__ import annotations

import shlex
import sys
from typing import Any

from invoke import Context, Exit

from raybake.errors import ExitCode, RaybakeError
from raybake.spec import DEFAULT_MODEL, DEFAULT_TASK, DEFAULT_TEXT_FIELD, TASKS, JobSpec
from tasks._front import (
    CLUSTER,
    CONNECT,
    IMAGE,
    NETWORK_POLICY,
    PLACEMENT,
    STORE,
    UNLESS_IMAGE,
    VARIANT,
    WHICH_BUILT,
    Flag,
    backend,
    flags,
    renamed,
    say,
    settings,
    task,
)

# The RayJob's own pods: how many, how large, what they mount and keep (docs/clusters.md).
RAYJOB = (
    Flag("gpus", "rayjob: GPUs in total, one worker pod per GPU (default: CPU workers)"),
    Flag("cpu_workers", "rayjob: CPU-only worker pods when --gpus is 0 (default: 1)"),
    Flag("logical_gpus", "rayjob: logical GPUs each CPU worker advertises to Ray (GPU code path on CPU pods)"),
    Flag("worker_cpu", "rayjob: CPU of each CPU-only worker pod (default: 2)"),
    Flag("worker_memory", "rayjob: memory of each CPU-only worker pod (default: 8Gi)"),
    Flag("pvc", "rayjob: PersistentVolumeClaim mounted in every pod, home of cluster: paths"),
    Flag(
        "keep_workers",
        "rayjob: keep the workers (and their GPUs) as long as the head after the job",
        "delete_workers_at_end",
        True,
        False,
    ),
    Flag("allow_image_mismatch", "submit although the cluster runs another Ray version or image", switch=True),
    Flag("ship_job", "send job/ from this checkout as a py_module (a cluster without the raybake image)", switch=True),
    NETWORK_POLICY,
    Flag("queue", "rayjob: the Kueue LocalQueue the RayJob waits in until Kueue admits it", "kueue_queue"),
)
# A team's cluster: how far the autoscaler goes.
AUTOSCALING = (
    Flag("max_gpus", "most GPU workers the autoscaler adds, one GPU each (default: raybake.max_gpus, 4)"),
    Flag("min_gpus", "GPU workers that stay when idle (default: 0)"),
    Flag("max_cpu_workers", "most CPU-only workers, in a group of their own (default: 0, none)"),
    Flag(
        "idle_timeout", "seconds an idle worker stays before the autoscaler removes it (default: 600)", "idle_timeout_s"
    ),
)
CLUSTER_ACTIONS = ("up", "upgrade", "status", "down")
JOB_HELP = {"job": "job id (the RayJob name for rayjob)"}


@task(
    (IMAGE,),
    RAYJOB,
    PLACEMENT,
    STORE,
    CLUSTER,
    CONNECT,
    help={
        "corpus": "file or directory of documents (path, URI, or cluster:/path on a cluster volume): "
        ".txt .jsonl .csv .tsv .parquet, .gz",
        "task": f"{' | '.join(TASKS)} (default: {DEFAULT_TASK})",
        "model": f"hub id or local model directory (default: {DEFAULT_MODEL})",
        "output": "where results go (default: results/<job id> locally, raybake.remote_output/<job id> on a cluster)",
        "text-field": f"text field of jsonl/csv/parquet records (default: {DEFAULT_TEXT_FIELD})",
        "id-field": "id field; default: the document's source (file@byte, file:line or file:row)",
        "job-args": 'more `python -m job` options, quoted: e.g. "--max-length 128 --top-k 3"',
        "entrypoint": 'run your own command instead of the built-in job, e.g. "python my_job.py"',
        "name": "job id, also the RayJob name (default: raybake-<task>-<hash of corpus, model, options, output>)",
        "detach": "submit and return without following the logs",
        "new": "submit even if the same job is already running or finished (default: attach to it)",
        "dry-run": "print what would be submitted (the RayJob manifest for rayjob), secrets redacted",
    },
    # More flags than letters: short ones would be handed out by the alphabet, not by meaning.
    auto_shortflags=False,
)
def submit(
    c: Context,
    corpus: str = "",
    task: str = DEFAULT_TASK,
    model: str | None = None,
    output: str | None = None,
    text_field: str = DEFAULT_TEXT_FIELD,
    id_field: str | None = None,
    job_args: str = "",
    entrypoint: str | None = None,
    name: str | None = None,
    detach: bool = False,
    new: bool = False,
    dry_run: bool = False,
    **overrides: Any,
) -> None:
    """Run the job on a Ray cluster, follow it with progress; exit 0 only if it SUCCEEDED.

    With no cluster configured this starts (or reuses) an embedded local Ray. The same command
    again attaches to the job it started (a retried CI step makes no duplicate); if that job
    failed or was stopped, it runs again and resumes from the shards already done.
    """
    from raybake import submit as submitting
    from tools import gha

    if not corpus and not entrypoint:
        raise RaybakeError("--corpus is required (or --entrypoint for your own script)", ExitCode.REFUSED)
    with backend(c, **overrides) as chosen:
        asked = JobSpec(
            corpus=corpus,
            output=output or "",
            task=task,
            model=model or DEFAULT_MODEL,
            text_field=text_field,
            id_field=id_field,
            job_args=tuple(shlex.split(job_args)),
            entrypoint=entrypoint,
        )
        spec = submitting.named(chosen, asked, name=name)
        # The job's log is its code's output (a pull request's, in pr-trial.yml): never runner commands.
        with gha.commands_stopped():
            code = submitting.submit(chosen, spec, follow=not detach, new=new, dry_run=dry_run)
    if code:
        raise Exit(code=code)


def _ended(result: Any, *, why: bool = False) -> None:
    """Print a job's status (and `why`, its message); exit with its code: 0 only for SUCCEEDED."""
    from raybake.result import exit_code

    print(f"{result.job_id}: {result.status}" + (f" ({result.reason})" if why and result.reason else ""))
    if exit_code(result):
        raise Exit(code=exit_code(result))


@task(CLUSTER, help=JOB_HELP)
def status(c: Context, job: str, **overrides: Any) -> None:
    """Print a job's status; exit 0 only if it SUCCEEDED."""
    from raybake.submit import newest_attempt

    with backend(c, **overrides) as chosen:
        result = chosen.status(newest_attempt(chosen, job))
    _ended(result, why=True)


@task(CLUSTER, help={**JOB_HELP, "follow": "keep streaming until the job ends (exit code as submit)"})
def logs(c: Context, job: str, follow: bool = False, **overrides: Any) -> None:
    """Print a job's logs, or follow them with progress to the end."""
    from raybake.submit import newest_attempt

    with backend(c, **overrides) as chosen:
        job = newest_attempt(chosen, job)
        if not follow:
            sys.stdout.write(chosen.logs(job))
            return
        result = chosen.follow(job)
    _ended(result)


@task(
    CLUSTER,
    help={**JOB_HELP, "delete": "also delete what the cluster keeps of the job (rayjob: the RayJob; else suspend it)"},
)
def stop(c: Context, job: str, delete: bool = False, **overrides: Any) -> None:
    """Stop a running job; its finished shards stay, and the same submit resumes it."""
    with backend(c, **overrides) as chosen:
        stopped = chosen.stop(job, delete=delete)
    say(f"{'stop requested for' if stopped else 'nothing to stop:'} {job}")


@task(CLUSTER)
def jobs(c: Context, **overrides: Any) -> None:
    """List the cluster's jobs, oldest first (rayjob: the RayJobs raybake made)."""
    with backend(c, **overrides) as chosen:
        rows = chosen.jobs()
    for row in rows:
        print(f"{row['id']:<40} {row['status']:<10} {row['entrypoint']}")


# A team cluster's pods take the RayJob's pod flags the same way, for the cluster, not one job.
_FOR_THE_CLUSTER = {f.name.replace("_", "-"): f.help.removeprefix("rayjob: ") for f in (*PLACEMENT, *STORE)}


@task(
    renamed((IMAGE,), image="image the pods run (default: the last `invoke push`)"),
    AUTOSCALING,
    flags("namespace", of=CLUSTER),
    flags("kube_context", of=CONNECT),
    renamed((NETWORK_POLICY,), network_policy="a NetworkPolicy letting only the cluster's own pods reach its head"),
    PLACEMENT,
    STORE,
    positional=["action"],
    help={
        "action": f"{' | '.join(CLUSTER_ACTIONS)}",
        "name": "the RayCluster's name (default: raybake.cluster, else raybake)",
        "force": "upgrade: although jobs are running (KubeRay recreates every pod, which ends them)",
        "dry-run": "up, upgrade: print the RayCluster and its Secret, secrets redacted",
        **_FOR_THE_CLUSTER,
    },
    auto_shortflags=False,
)
def cluster(
    c: Context, action: str, name: str | None = None, force: bool = False, dry_run: bool = False, **overrides: Any
) -> None:
    """A team's long-lived, autoscaling KubeRay RayCluster of the image: up, upgrade, status, down.

    An admin runs `up` once and `upgrade` after each `invoke push`; everyone submits with
    `invoke submit --cluster NAME` (docs/clusters.md, "A team's cluster").
    """
    from raybake.clusters.team import TeamCluster

    if action not in CLUSTER_ACTIONS:
        raise RaybakeError(f"unknown action {action!r}; choose one of {', '.join(CLUSTER_ACTIONS)}", ExitCode.REFUSED)
    given = settings(c, **overrides)
    team = TeamCluster(given, name or given.cluster or "raybake")
    if dry_run and action in ("up", "upgrade"):
        print(team.describe(), end="")
        return
    if action == "status":
        print("\n".join(team.status()))
        return
    said = {"up": team.up, "down": team.down}.get(action)
    say(said() if said else team.upgrade(force=force))


@task()
def versions(c: Context) -> None:
    """raybake's version and the pinned ones as NAME=VALUE lines (workflows: `invoke versions >> "$GITHUB_ENV"`)."""
    from raybake.versions import pinned

    for name, value in pinned().items():
        print(f"{name}_VERSION={value}")


@task(
    (VARIANT,),
    help={
        "base-image": "base image instead of the variant's default (e.g. a locally made one)",
        "torch-index": "pip index for torch instead of the variant's default; '' means PyPI",
        "bake-model": "bake the default model into the image and set HF_HUB_OFFLINE=1",
        "push": "push after building (needs raybake.registry)",
        "cache-ref": "image to reuse layers from (pulled if the registry has it); with --push, updated",
    },
)
def build(
    c: Context,
    base_image: str | None = None,
    torch_index: str | None = None,
    bake_model: bool = False,
    push: bool = False,
    cache_ref: str | None = None,
    **overrides: Any,
) -> None:
    """Build the job image, tagged by a hash of its inputs; skipped when that image exists."""
    from raybake.image import build as image

    image.build_and_push(
        settings(c, **overrides),
        base_image=base_image,
        torch_index=torch_index,
        bake_model=bake_model,
        then_push=push,
        cache_ref=cache_ref,
    )


@task(
    WHICH_BUILT,
    iterable=["tag"],
    help={
        "tag": "a further tag, e.g. sha-<commit>, a release or latest; repeatable; pushed after the "
        "content-hash tags, never alone",
    },
)
def push(c: Context, tag: list[str] | None = None, **overrides: Any) -> None:
    """Push the last built image to raybake.registry; print and record its digest.

    On a runner the step output `digest` is the one the registry confirmed to this push: what
    image.yml attests, never a later lookup of a tag that any branch could have moved since."""
    from raybake.image import build as image
    from tools import gha

    given = settings(c, **overrides)
    pushed = image.push(given, variant=given.variant, tags=tag or [])
    gha.set_output("digest", pushed.rsplit("@", 1)[1])


@task(
    renamed((IMAGE,), image="image to pull on the nodes (default: the last `invoke push`)"),
    flags("namespace", of=CLUSTER),
    flags("kube_context", of=CONNECT),
    help={
        "nodes": "key=value[,key=value] of the nodes to pull on (default: raybake.node_selector; GPU nodes' "
        "taint is tolerated)",
        "dry-run": "print the DaemonSet instead of applying it",
    },
)
def prepull(c: Context, nodes: str = "", dry_run: bool = False, **overrides: Any) -> None:
    """Pull the job image onto the (GPU) nodes ahead of a job: a DaemonSet that holds it there."""
    from raybake.image.pushed import image_for
    from raybake.kube import prepull as pulling
    from raybake.kube.manifests import to_yaml

    given = settings(c, **overrides)
    manifest = pulling.daemonset(image_for(given), settings=given, nodes=nodes)
    if dry_run:
        sys.stdout.write(to_yaml(manifest))
        return
    where = pulling.apply(manifest, settings=given)
    name = manifest["metadata"]["name"]
    say(f"DaemonSet {name} pulls the image in namespace {where}; `kubectl rollout status ds/{name}` waits")


@task(
    UNLESS_IMAGE,
    help={
        "workers": "worker containers beside the head (default 2)",
        "gpus-per-worker": "GPUs each worker offers Ray (needs the NVIDIA container toolkit)",
        "image": "image to run (default: the last `invoke build` of the variant)",
        "data": "host directory mounted at the same path in every container (default: this project)",
        "user": "UID:GID the containers run as, e.g. 1000680000:0 as OpenShift does (default: yours); "
        "--data must then be writable by it",
        "env-file": "KEY=VALUE lines every node gets in its environment, e.g. object-store credentials",
    },
)
def up(
    c: Context,
    workers: int = 2,
    gpus_per_worker: int = 0,
    image: str | None = None,
    data: str | None = None,
    user: str | None = None,
    env_file: str | None = None,
    **overrides: Any,
) -> None:
    """Start a Ray head and N workers as containers on the local Docker engine."""
    from raybake.clusters import localcluster

    started = localcluster.up(
        settings(c, **overrides),
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        image=image,
        data_dir=data,
        user=user,
        env_file=env_file,
    )
    say(f"cluster up: `invoke submit --address {started.url} --corpus ...` runs a job on it")


@task(help={"containers-only": "only remove the Docker cluster; leave the embedded local Ray running"})
def down(c: Context, containers_only: bool = False) -> None:
    """Stop the embedded local Ray `invoke submit` started (only it), and remove the `invoke up` containers."""
    from raybake.clusters import embedded, localcluster

    given = settings(c)
    if not containers_only:
        stopped = embedded.stop(given)
        for head in stopped:
            say(f"local Ray stopped (dashboard {head.url})")
        if not stopped:
            say("no local Ray of raybake's was running")
    removed = localcluster.down(given)
    say(f"removed {removed} cluster container(s)" if removed else "no cluster containers")
