"""Model tasks: each module defines one `Task` subclass; TASKS maps the --task name to it."""

from __future__ import annotations

from job.config import TASK_NAMES
from job.pipelines.base import Task
from job.pipelines.classify import Classify
from job.pipelines.embed import Embed
from job.pipelines.generate import Generate
from job.pipelines.ner import Ner

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (Embed, Classify, Ner, Generate)}
assert tuple(TASKS) == TASK_NAMES, "job/config.py TASK_NAMES must list every task"

__all__ = ["TASKS", "Task"]
