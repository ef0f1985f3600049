"""The client and the job agree on the job's tasks (job/pipelines/__init__.py) and defaults (job/interface.json)."""

from __future__ import annotations

import json
import subprocess
import sys

from job.config import DEFAULT_MODEL, DEFAULT_TEXT_FIELD
from job.pipelines import DEFAULT_TASK, TASK_NAMES
from job.pipelines import TASKS as PIPELINES
from job.pipelines.base import Task
from raybake import spec
from raybake.versions import ROOT


def test_every_task_the_registry_names_has_a_pipeline_and_no_other():
    assert tuple(PIPELINES) == TASK_NAMES
    assert all(issubclass(PIPELINES[name], Task) for name in TASK_NAMES)


def test_the_client_reads_what_the_job_reads():
    assert spec.TASKS == TASK_NAMES
    assert (spec.DEFAULT_TASK, spec.DEFAULT_MODEL, spec.DEFAULT_TEXT_FIELD) == (
        DEFAULT_TASK,
        DEFAULT_MODEL,
        DEFAULT_TEXT_FIELD,
    )
    assert DEFAULT_TASK in TASK_NAMES


def test_the_jobs_command_line_offers_what_the_interface_says():
    shown = subprocess.run(
        [sys.executable, "-m", "job", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    written = json.loads((ROOT / "job" / "interface.json").read_text())
    assert "{" + ",".join(TASK_NAMES) + "}" in shown
    assert written["default_model"] in shown.replace("\n", "").replace(" ", "")
