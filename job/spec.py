"""spec.json: what determines a job's results, and how a rerun into the same output is compared
with the job that started it (a changed corpus is named, a changed job refused)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from job import urls
from job.config import RunConfig
from job.corpus import CorpusFile
from job.digest import digest

SPEC_FILE = "spec.json"
# spec.json's content: JSON as written and read back.
Spec = dict[str, Any]


def of(config: RunConfig, files: list[CorpusFile]) -> Spec:
    """What determines the results: a rerun into the same output must match it exactly.
    Each file's size and version (etag or mtime) say whether the corpus is still the same; the
    image, the job's code, the frameworks and the model's files whether the job is."""
    wc = config.worker
    spec = {
        "corpus": urls.redact(wc.corpus),
        "files": [[f.rel, f.size, f.version] for f in files],
        "task": wc.task,
        "model": wc.model,
        "model_files": _model_digest(wc.model),
        "options": asdict(wc.options),
        "fields": asdict(wc.fields),
        "split_bytes": config.split_bytes,
        "max_record_bytes": wc.max_record_bytes,
        "image": os.environ.get("RAYBAKE_IMAGE"),
        "code": _code_digest(),
        "versions": versions(),
    }
    # As spec.json holds it (a tuple of --stop strings reads back as a list): a rerun compares equal.
    return json.loads(json.dumps(spec))


def identity(spec: Spec) -> Spec:
    """A spec as two jobs are compared: a presigned corpus URL counts without its signature and
    its dates (signed again, it names the same files, whose identities are in `files`)."""
    return {**spec, "corpus": urls.unsigned(str(spec.get("corpus", "")))}


def _code_digest() -> str:
    """The job's own code, by content: another job/ may give other results."""
    root = Path(__file__).parent
    files = sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json") and "__pycache__" not in p.parts)
    return digest([(str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files])


def _model_digest(model: str) -> str | None:
    """A model directory's files by name, size and mtime (weights are too big to hash on every
    run); None for a hub id, whose name and --revision the spec holds."""
    root = Path(model).expanduser()
    if not root.is_dir():
        return None
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return digest([(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def versions() -> dict[str, str | None]:
    """What the job ran on. The packages' installed metadata, not their modules: the driver never
    imports torch or transformers (it starts seconds faster), and its workers run in the same
    image or environment."""
    from importlib import metadata

    def installed(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    packages = {name: installed(name) for name in ("ray", "torch", "transformers", "pyarrow")}
    return {"python": platform.python_version(), **packages}


def difference(output: str, previous: Spec, spec: Spec) -> str:
    """Why a rerun into `output` is refused: the corpus changed (named), or the job did."""
    before = {rel: (size, version) for rel, size, version in previous.get("files", [])}
    after = {rel: (size, version) for rel, size, version in spec["files"]}
    changed = sorted(rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel))
    old, new = identity(previous), identity(spec)
    if changed and all(old.get(k) == new.get(k) for k in new if k != "files"):
        return (
            f"the corpus changed since {output!r} was started ({len(changed)} file(s) added, removed or modified: "
            f"{', '.join(map(repr, changed[:10]))}{' ...' if len(changed) > 10 else ''}); "
            "its results would mix two corpora: choose another --output or delete it"
        )
    keys = sorted(k for k in new.keys() | old.keys() if new.get(k) != old.get(k))
    what = f"{output!r} holds results of a different job (changed: {', '.join(keys)})"
    return f"{what}; choose another --output or delete it"
