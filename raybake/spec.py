"""JobSpec: what to run. Turned into the `python -m job` command line, the one contract with job/."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from dataclasses import dataclass, field

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TASKS = ("embed", "classify", "ner", "generate")


@dataclass(frozen=True)
class JobSpec:
    corpus: str
    output: str
    task: str = "embed"
    model: str = DEFAULT_MODEL
    text_field: str = "text"
    id_field: str | None = None
    # Further `python -m job` options, already split: ("--max-length", "128", ...).
    job_args: tuple[str, ...] = ()
    # A user's own command instead of the built-in job (their original script, say).
    entrypoint: str | None = None
    name: str = field(default="")

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            from raybake.errors import RaybakeError

            raise RaybakeError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}", 2)

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


def job_name(task: str, *, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"raybake-{re.sub(r'[^a-z0-9-]', '-', task.lower())}-{stamp}"
