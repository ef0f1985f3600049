"""What makes two submits the same job: everything that changes its results, from metadata only.

The job id (raybake/spec.py) hashes the spec as given (corpus path, task, model, fields,
options, output) and, from here, what the spec only names:

- image: what the pods run (a digest where one is known); where job/ travels from this
  checkout instead (the embedded Ray, --ship-job), a content hash of job/;
- model: a local model directory's files (sizes and mtimes); a hub id counts by its name and
  --revision, which are in the spec;
- code: an --entrypoint's working directory, hashed by content as it would be uploaded;
- corpus: the corpus files' identities, relative path + size + ETag or mtime, from one fsspec
  listing: no record is read.

Each part is kept by name in the submitted job's metadata, so a later submit whose id differs
can say which part changed since the job it would otherwise have attached to.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from job import listing, urls
from job.digest import digest
from raybake import console
from raybake.clusters.transport import tree_digest, upload_files
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.spec import CLUSTER_PREFIX, JobSpec, is_local_path

PARTS = ("image", "model", "code", "corpus")
# The client's look at an object store must not hang a submit on an endpoint only the cluster
# reaches (an in-cluster store): one attempt, bounded waits.
CLIENT_S3 = {"config_kwargs": {"connect_timeout": 5, "read_timeout": 20, "retries": {"max_attempts": 1}}}


def _row(rel: str, info: Mapping[str, Any]) -> tuple[str, int, str]:
    return (rel, int(info.get("size") or 0), listing.version(info) or "")


def file_identities(url: str, *, settings: Settings) -> list[tuple[str, int, str]]:
    """(relative path, size, version) of every file under `url`, from one listing."""
    import fsspec

    from raybake import objectstore

    options = objectstore.storage_options(url, settings)
    if url.startswith(("s3://", "s3a://")):
        config = {**CLIENT_S3["config_kwargs"], **options.get("config_kwargs", {})}
        options = {**CLIENT_S3, **options, "config_kwargs": config}
    fs, root = fsspec.core.url_to_fs(url, **options)
    if url.startswith(("http://", "https://")):
        # One document per URL, and no listing of a web server: its headers say size and version.
        info = fs.info(url)
        return [_row("", info)]
    if fs.isfile(root):
        info = fs.info(root)
        return [_row(root.rsplit("/", 1)[-1], info)]
    root = root.rstrip("/")
    found = fs.find(root, withdirs=False, detail=True)
    rows = [_row(path[len(root) + 1 :], info) for path, info in found.items()]
    if not rows and not fs.exists(root):
        raise FileNotFoundError(url)
    return sorted(r for r in rows if listing.is_document(r[0]))


def corpus_identity(corpus: str, *, settings: Settings, strict: bool) -> str:
    """The corpus files' identities as one hash; `strict`: the credentials used here are the job's.

    A corpus that is not there is left to the checks that refuse it in their own words. A store
    that refuses this machine's credentials refuses the job's too where they are the same ones
    (`strict`); a RayJob's come from its Secret, so there it only costs the corpus's identity.
    """
    if not corpus or corpus.startswith(CLUSTER_PREFIX):
        return "unlisted"  # a cluster volume: only the cluster sees its files
    url = str(Path(corpus).resolve()) if is_local_path(corpus) else corpus
    try:
        return digest(file_identities(url, settings=settings))
    except FileNotFoundError:
        return "absent"
    except PermissionError as exc:
        if strict:
            raise RaybakeError(
                f"the object store refused access to --corpus {urls.redact(corpus)!r} ({_first_line(exc)}): check the "
                "credentials in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for s3://)",
                ExitCode.UNREACHABLE,
            ) from None
        reason = _reason(exc, url)
    except Exception as exc:  # noqa: BLE001 - any store's client error: the job still decides
        reason = _reason(exc, url)
    console.aside(f"note: cannot list --corpus from here ({reason}); the job id covers its path, not its files")
    return "unlisted"


def _reason(exc: BaseException, url: str) -> str:
    if url.startswith(("http://", "https://")):
        # An HTTP error repeats the URL, and a presigned URL's query is its credential.
        return type(exc).__name__
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def model_identity(model: str) -> str:
    path = Path(model).expanduser()
    if not path.is_dir():
        return ""  # a hub id: its name and --revision are in the spec
    return digest([(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in upload_files(path)])


def of(spec: JobSpec, *, image: str, settings: Settings, strict: bool, cwd: Path | None = None) -> dict[str, str]:
    """The parts of a job's identity that its spec only names; see the module docstring."""
    return {
        "image": image,
        "model": model_identity(spec.model),
        "code": tree_digest(cwd or Path.cwd()) if spec.entrypoint else "",
        "corpus": corpus_identity(spec.corpus, settings=settings, strict=strict),
    }


def changed(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The parts that differ, in the order PARTS names them; 'options' when none does (the spec did)."""
    parts = [p for p in PARTS if old.get(p, "") != new.get(p, "")]
    return parts or ["options"]
