"""Where the corpus and the output live when the job runs on another machine than this one.

Three kinds of location: a path on this machine, a URI any node can open (s3://, gs://,
https://), and a path on the cluster's own volume, written `cluster:/mnt/data/corpus`. A local
corpus small enough travels with the job as its working_dir; anything bigger must already be
where the cluster can read it, and is refused before a single byte is uploaded.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from raybake import console
from raybake.clusters.base import Placed
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.spec import CLUSTER_PREFIX, JobSpec, is_local_path

MIB = 1024 * 1024
# What an upload never needs: version control, environments, caches and earlier results.
UPLOAD_EXCLUDES = [".git", ".venv", "results", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".raybake"]


def on_cluster(path: str) -> str:
    """The path as the job sees it: a `cluster:` path loses its prefix, a URI stays a URI."""
    return path.removeprefix(CLUSTER_PREFIX)


def excluded(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in UPLOAD_EXCLUDES)


def upload_files(root: Path) -> Iterator[Path]:
    """The files an upload of `root` carries, in a stable order, skipping UPLOAD_EXCLUDES."""
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not excluded(d))
        yield from (Path(folder) / f for f in sorted(files) if not excluded(f))


def tree_digest(root: Path) -> str:
    """Content hash of what an upload of `root` carries: a job's id changes with its code."""
    h = hashlib.sha256()
    for path in upload_files(root):
        h.update(f"{path.relative_to(root) if path != root else path.name}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def upload_size(root: Path) -> int:
    """Bytes an upload of `root` carries."""
    return sum(path.stat().st_size for path in upload_files(root))


def check_upload(root: Path, *, limit_mib: int, what: str = "corpus") -> int:
    size = upload_size(root)
    if size > limit_mib * MIB:
        raise RaybakeError(
            f"refused: the {what} {str(root)!r} is {size / MIB:.1f} MiB, over the {limit_mib} MiB upload limit; "
            "put it where the cluster reads it: object storage (--corpus s3://bucket/corpus) or a cluster "
            "volume (--corpus cluster:/mnt/data/corpus with --pvc CLAIM)",
            ExitCode.REFUSED,
        )
    return size


def output_root(settings: Settings) -> str:
    """Where outputs go when --output is not given: raybake.remote_output for a real cluster, else
    results/ (an address may be a cluster on this machine; a RayJob's pods never are)."""
    if settings.backend == "local" or (settings.backend == "address" and not settings.remote_output):
        return settings.results_dir
    if not settings.remote_output:
        raise RaybakeError(
            "a job on a real cluster cannot write to this machine: pass --output (a URI such as "
            "s3://bucket/results, or cluster:/mnt/data/results on a --pvc volume) or set raybake.remote_output",
            ExitCode.REFUSED,
        )
    return settings.remote_output.rstrip("/")


def for_cluster(spec: JobSpec, *, limit_mib: int, cwd: Path | None = None, shares_disk: bool = False) -> Placed:
    """Place the job on a remote cluster: a small local corpus becomes the working_dir, `cluster:`
    paths lose their prefix. Local paths come absolute (spec.with_id).

    `shares_disk`: the cluster may see this machine's files (an address can be a cluster here), so
    a local output is kept; a RayJob's pods never do, and it is refused.
    """
    cwd = cwd or Path.cwd()
    named = spec
    if is_local_path(spec.output):
        if not shares_disk:
            raise RaybakeError(
                f"refused: --output {spec.output!r} is on this machine, where a remote job cannot write; "
                "name a URI (s3://bucket/results) or a cluster volume path (cluster:/mnt/data/results)",
                ExitCode.REFUSED,
            )
        console.say(
            f"note: --output {spec.output!r} is a path on this machine; only a cluster that shares "
            "this disk writes there (a URI or cluster: path works everywhere)"
        )
    spec = dataclasses.replace(spec, output=on_cluster(spec.output))
    if spec.entrypoint:
        # A user's own script needs their working directory; it carries the corpus if that lies inside.
        check_upload(cwd, limit_mib=limit_mib, what="working directory")
        corpus = spec.corpus
        if corpus and is_local_path(corpus):
            corpus = os.path.relpath(corpus, cwd)
        env = {"working_dir": str(cwd), "excludes": UPLOAD_EXCLUDES}
        return Placed(named, dataclasses.replace(spec, corpus=on_cluster(corpus)), env)
    if not is_local_path(spec.corpus):
        return Placed(named, dataclasses.replace(spec, corpus=on_cluster(spec.corpus)))
    source = Path(spec.corpus)
    if not source.exists():
        raise RaybakeError(f"refused: no corpus at {spec.corpus!r}", ExitCode.REFUSED)
    check_upload(source, limit_mib=limit_mib)
    # A folder is the working_dir itself; a single file travels in its folder with every sibling
    # excluded by name (a `/*` pattern with a negation would also exclude the folder itself).
    if source.is_dir():
        env = {"working_dir": str(source), "excludes": UPLOAD_EXCLUDES}
        return Placed(named, dataclasses.replace(spec, corpus="."), env)
    siblings = sorted(f"/{p.name}" for p in source.parent.iterdir() if p.name != source.name)
    env = {"working_dir": str(source.parent), "excludes": siblings}
    return Placed(named, dataclasses.replace(spec, corpus=source.name), env)
