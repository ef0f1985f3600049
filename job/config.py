"""What a run is configured with: plain dataclasses, no heavy imports.

The driver plans shards and hands these to workers; keeping them free of torch and
transformers lets the driver start in a fraction of a second instead of importing a framework
it never uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from job.corpus import Fields

# What the client may ask of the job: its tasks and defaults. The client reads the same file
# (raybake/spec.py) rather than importing job/, so the two cannot disagree.
INTERFACE = json.loads((Path(__file__).parent / "interface.json").read_text())
TASK_NAMES: tuple[str, ...] = tuple(INTERFACE["tasks"])
DEFAULT_TASK: str = INTERFACE["default_task"]
DEFAULT_MODEL: str = INTERFACE["default_model"]
DEFAULT_TEXT_FIELD: str = INTERFACE["default_text_field"]
# Padded tokens per batch when --token-budget is not given. On a CPU a few hundred tokens
# already fill the matrix units, and small batches of length-sorted documents carry little
# padding even in a small shard; a GPU needs big batches to stay busy.
TOKEN_BUDGET = {"cpu": 512, "cuda": 65536}


@dataclass(frozen=True)
class TaskOptions:
    max_length: int | None = None
    top_k: int = 1
    max_new_tokens: int = 32
    dtype: str = "auto"
    device: str = "auto"
    revision: str | None = None


@dataclass(frozen=True)
class WorkerConfig:
    task: str
    model: str
    options: TaskOptions
    fields: Fields
    corpus: str
    output: str
    token_budget: int | None  # None: TOKEN_BUDGET of the worker's device
    max_batch_size: int
    threads: int
    # Seconds to sleep before each batch: keeps shards in flight long enough for the fault
    # tests to kill a worker or stop the job mid-run. Zero in any real run.
    pause_per_batch: float = 0.0
