"""JobSpec: what to run. Turned into the `python -m job` command line, the one contract with job/."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from raybake.errors import ExitCode, RaybakeError
from raybake.versions import ROOT

# The job's tasks and defaults, as the job itself reads them (job/config.py); the client never imports job/.
JOB_INTERFACE = json.loads((ROOT / "job" / "interface.json").read_text())
TASKS: tuple[str, ...] = tuple(JOB_INTERFACE["tasks"])
DEFAULT_TASK: str = JOB_INTERFACE["default_task"]
DEFAULT_MODEL: str = JOB_INTERFACE["default_model"]
DEFAULT_TEXT_FIELD: str = JOB_INTERFACE["default_text_field"]


@dataclass(frozen=True)
class JobSpec:
    corpus: str
    output: str
    task: str = DEFAULT_TASK
    model: str = DEFAULT_MODEL
    text_field: str = DEFAULT_TEXT_FIELD
    id_field: str | None = None
    # Further `python -m job` options, already split: ("--max-length", "128", ...).
    job_args: tuple[str, ...] = ()
    # A user's own command instead of the built-in job (their original script, say).
    entrypoint: str | None = None
    name: str = field(default="")

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise RaybakeError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}", ExitCode.REFUSED)
        for key in ("corpus", "output", "model"):
            # The command line shows in job lists, logs and the manifest: no place for a secret.
            parts = urlsplit(getattr(self, key)) if "://" in getattr(self, key) else None
            if parts and parts.password:
                shown = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
                raise RaybakeError(
                    f"the --{key} URL carries a password ({shown!r}); it would show in job lists, logs and "
                    "the manifest: give the filesystem its credentials in the environment instead "
                    "(e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for s3://)",
                    ExitCode.REFUSED,
                )

    def job_argv(self) -> list[str]:
        argv = [
            "python",
            "-m",
            "job",
            "--corpus",
            self.corpus,
            "--output",
            self.output,
            "--task",
            self.task,
            "--model",
            self.model,
            "--text-field",
            self.text_field,
        ]
        if self.id_field:
            argv += ["--id-field", self.id_field]
        return argv + list(self.job_args)

    def command(self) -> str:
        """The entrypoint as Ray runs it: a shell line, so every argument is quoted, never pasted."""
        return self.entrypoint or shlex.join(self.job_argv())


# A path on the cluster's own volume, e.g. `cluster:/mnt/data/corpus` (raybake/clusters/transport.py).
CLUSTER_PREFIX = "cluster:"


def is_local_path(uri: str) -> bool:
    """A path on this machine: neither a URI nor a `cluster:` path."""
    return "://" not in uri and not uri.startswith(CLUSTER_PREFIX)


def located(path: str) -> str:
    """A path on this machine made absolute (the job runs in another directory, maybe on another
    machine that mounts this one's); a URI or a `cluster:` path as written."""
    return str(Path(path).resolve()) if path and is_local_path(path) else path


def with_id(spec: JobSpec, *, name: str | None, results_dir: str) -> JobSpec:
    """The spec as the submit flow carries it: its paths located, its job id, and its output
    `<results_dir>/<job id>` unless one was given. The one place a path given here is resolved.

    The id is `name` as given, else `raybake-<task>-<hash of what the job runs>`. Either way the
    same command twice gives the same id, so a retried submit (a re-run CI step) finds the first
    job instead of starting a second, while a changed corpus, model, option or output gives
    another default id. Local paths count by where they point.
    """
    spec = dataclasses.replace(spec, corpus=located(spec.corpus), output=located(spec.output))
    root = located(results_dir)
    if not name:
        # A default output counts as its root: a local one by where it points, a URI as written.
        default = root if is_local_path(root) else f"{root}/"
        what = dataclasses.asdict(spec) | {"name": None, "output": spec.output or default}
        digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8]
        name = f"raybake-{spec.task}-{digest}"
    return dataclasses.replace(spec, name=name, output=spec.output or f"{root}/{name}")
