"""JobSpec: what to run. Turned into the `python -m job` command line, the one contract with job/."""

from __future__ import annotations

import base64
import dataclasses
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from job import urls
from job.digest import digest
from job.pipelines import DEFAULT_TASK, TASK_NAMES
from raybake.errors import ExitCode, RaybakeError
from raybake.versions import ROOT

# The job's defaults, as the job itself reads them (job/config.py); its tasks are the registry's.
JOB_INTERFACE = json.loads((ROOT / "job" / "interface.json").read_text())
TASKS: tuple[str, ...] = TASK_NAMES
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
    # What the spec only names, by part (raybake/identity.py): image, model, code, corpus.
    identity: tuple[tuple[str, str], ...] = ()
    # The id the spec alone would get: submits that differ only in identity share it.
    lineage: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise RaybakeError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}", ExitCode.REFUSED)

    def arguments(self) -> list[str]:
        """The options of `python -m job`, as the job parses them."""
        argv = [
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

    def encoded(self) -> str:
        """The options as base64 of their JSON list: what `SPEC_VARIABLE` holds for the job.

        They travel out of band, never in the entrypoint or an argv: the entrypoint is listed by
        anyone who can list jobs, kept in a RayJob in etcd and in every process list, and the
        options may hold a presigned URL's signature or a `user:pass@`. base64's alphabet means
        nothing to any shell on the way, so whatever a path is called it reaches the job as data."""
        return base64.b64encode(json.dumps(self.arguments()).encode()).decode()

    def job_argv(self, *, python: str = "python", source: str = "env") -> list[str]:
        """`python -m job --spec-from SOURCE`: the options from `SPEC_VARIABLE` (env) or stdin;
        `python` is the cluster's interpreter on PATH unless named."""
        return [python, "-m", "job", SPEC_FLAG, source]

    def command(self, *, python: str = "python") -> str:
        """The entrypoint as Ray runs it: the built-in job's, or the user's own command."""
        return self.entrypoint or shlex.join(self.job_argv(python=python))

    def shown_command(self) -> str:
        """The entrypoint as people see it: the options readable, URL credentials masked."""
        if self.entrypoint:
            return self.entrypoint
        return shown_options(self.arguments())


# The job's flag naming where its options come from, and the variable that holds them (job/__main__.py).
SPEC_FLAG: str = JOB_INTERFACE["spec_flag"]
SPEC_VARIABLE: str = JOB_INTERFACE["spec_variable"]
# The variable naming a file of object-store credentials for this job alone (job/credentials.py).
CREDENTIALS_VARIABLE: str = JOB_INTERFACE["credentials_variable"]
# The lines the job puts around a failure's traceback (raybake/clusters/follow.py hides what is between).
TRACEBACK_BEGIN, TRACEBACK_END = JOB_INTERFACE["traceback_markers"]


def shown_options(arguments: list[str], *, python: str = "python") -> str:
    return shlex.join([python, "-m", "job", *(urls.redact(str(a)) for a in arguments)])


def shown_entrypoint(entrypoint: str, env_vars: dict[str, str] | None = None) -> str:
    """An entrypoint read back from a cluster, as people see it: the options its runtime env
    carried decoded, URLs masked; any other entrypoint as it is."""
    try:
        words = shlex.split(entrypoint)
    except ValueError:
        return entrypoint
    encoded = (env_vars or {}).get(SPEC_VARIABLE)
    if encoded and words[1:] == ["-m", "job", SPEC_FLAG, "env"]:
        try:
            arguments = json.loads(base64.b64decode(encoded, validate=True))
        except ValueError:
            return entrypoint
        return shown_options(arguments, python=words[0])
    return entrypoint


# A path on the cluster's own volume, e.g. `cluster:/mnt/data/corpus` (raybake/clusters/transport.py).
CLUSTER_PREFIX = "cluster:"


def is_local_path(uri: str) -> bool:
    """A path on this machine: neither a URI nor a `cluster:` path."""
    return "://" not in uri and not uri.startswith(CLUSTER_PREFIX)


def located(path: str) -> str:
    """A path on this machine made absolute (the job runs in another directory, maybe on another
    machine that mounts this one's); a URI or a `cluster:` path as written."""
    return str(Path(path).resolve()) if path and is_local_path(path) else path


def with_id(spec: JobSpec, *, name: str | None, results_dir: str, identity: dict[str, str] | None = None) -> JobSpec:
    """The spec as the submit flow carries it: its paths located, its job id, and its output
    `<results_dir>/<job id>` unless one was given. The one place a path given here is resolved.

    The id is `name` as given, else `raybake-<task>-<hash of what the job runs>`: the spec and
    its `identity` (image, model files, entrypoint code, corpus files; raybake/identity.py).
    The same command on the same inputs gives the same id, so a retried submit (a re-run CI
    step) finds the first job instead of starting a second; a change to any of them gives
    another id, and so another default output. Local paths count by where they point.
    """
    spec = dataclasses.replace(spec, corpus=located(spec.corpus), output=located(spec.output))
    root = located(results_dir)
    # A default output counts as its root: a local one by where it points, a URI as written.
    default = root if is_local_path(root) else f"{root}/"
    what = dataclasses.asdict(spec) | {"name": None, "identity": None, "lineage": None}
    what["output"] = spec.output or default
    lineage = f"raybake-{spec.task}-{digest(what, 8)}"
    identity = identity or {}
    name = name or f"raybake-{spec.task}-{digest(what | {'identity': identity}, 8)}"
    return dataclasses.replace(
        spec,
        name=name,
        output=spec.output or f"{root}/{name}",
        identity=tuple(sorted(identity.items())),
        lineage=lineage,
    )
