"""JobSpec: what to run. Turned into the `python -m job` command line, the one contract with job/."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from raybake import urls
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

    def job_argv(self, *, python: str = "python") -> list[str]:
        """`python -m job --spec-b64 X`: the options as base64 of their JSON list; `python` is the
        cluster's interpreter on PATH unless named.

        Ray runs the entrypoint through a shell, and KubeRay's submitter pastes it into one bash
        line; base64's alphabet means nothing to any shell, quoted or not, so whatever the corpus,
        output or model is called it reaches the job as data, byte for byte."""
        encoded = base64.b64encode(json.dumps(self.arguments()).encode()).decode()
        return [python, "-m", "job", SPEC_FLAG, encoded]

    def command(self, *, python: str = "python") -> str:
        """The entrypoint as Ray runs it: the built-in job's, or the user's own command."""
        return self.entrypoint or shlex.join(self.job_argv(python=python))

    def shown_command(self) -> str:
        """The entrypoint as people see it: the options readable, URL credentials masked."""
        if self.entrypoint:
            return self.entrypoint
        return shlex.join(["python", "-m", "job", *(urls.redact(a) for a in self.arguments())])


# The job's flag for its options as base64 JSON (job/__main__.py).
SPEC_FLAG = "--spec-b64"


def shown_entrypoint(entrypoint: str) -> str:
    """An entrypoint read back from a cluster, as people see it: a spec decoded, URLs masked."""
    try:
        words = shlex.split(entrypoint)
    except ValueError:
        return entrypoint
    if len(words) == 5 and words[1:4] == ["-m", "job", SPEC_FLAG]:
        try:
            arguments = json.loads(base64.b64decode(words[4], validate=True))
        except ValueError:
            return entrypoint
        return shlex.join([words[0], "-m", "job", *(urls.redact(str(a)) for a in arguments)])
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
    lineage = f"raybake-{spec.task}-{_hash(what)}"
    identity = identity or {}
    name = name or f"raybake-{spec.task}-{_hash(what | {'identity': identity})}"
    return dataclasses.replace(
        spec,
        name=name,
        output=spec.output or f"{root}/{name}",
        identity=tuple(sorted(identity.items())),
        lineage=lineage,
    )


def _hash(what: dict) -> str:
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8]
