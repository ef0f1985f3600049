"""Model tasks: each module defines one `Task` subclass; TASKS maps the --task name to it."""

from __future__ import annotations

from job.pipelines.base import Task
from job.pipelines.classify import Classify
from job.pipelines.embed import Embed
from job.pipelines.generate import Generate
from job.pipelines.ner import Ner

# The names and their order are job/interface.json's `tasks` (tests/unit/test_interface.py ties them).
TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (Embed, Classify, Ner, Generate)}

__all__ = ["TASKS", "Task"]
