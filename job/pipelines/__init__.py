"""The model tasks, by their --task name: the one registry that the job's command line
(job/__main__.py), its workers (job/worker.py) and the client (raybake/spec.py) read.

An entry names the module and class that run the task rather than importing them, so reading
the names costs nothing: the driver and the client never import torch. Adding a task type is
its module (a `Task` subclass, job/pipelines/base.py), its test, and one line of REGISTRY.
Standard library only: the client imports this module (CONTRIBUTING.md, the layers).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from job.pipelines.base import Task


@dataclass(frozen=True)
class Entry:
    runs: str  # "module:Class", a Task subclass
    # Whether --long-documents chunk means something for it: a row per window (embed), or the
    # entities of all windows (ner). The others refuse it.
    chunks: bool = False


# In the order --help lists them.
REGISTRY: dict[str, Entry] = {
    "embed": Entry("job.pipelines.embed:Embed", chunks=True),
    "classify": Entry("job.pipelines.classify:Classify"),
    "ner": Entry("job.pipelines.ner:Ner", chunks=True),
    "generate": Entry("job.pipelines.generate:Generate"),
}
DEFAULT_TASK = "embed"
TASK_NAMES: tuple[str, ...] = tuple(REGISTRY)
CHUNK_TASKS: tuple[str, ...] = tuple(name for name, entry in REGISTRY.items() if entry.chunks)


class _Tasks(Mapping[str, "type[Task]"]):
    """Each name's Task subclass, its module imported when the class is first asked for."""

    def __getitem__(self, name: str) -> type[Task]:
        module, _, cls = REGISTRY[name].runs.partition(":")
        found: type[Task] = getattr(importlib.import_module(module), cls)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


TASKS: Mapping[str, type[Task]] = _Tasks()

__all__ = ["CHUNK_TASKS", "DEFAULT_TASK", "REGISTRY", "TASKS", "TASK_NAMES", "Entry"]
