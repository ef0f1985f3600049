"""What a run is configured with: plain dataclasses, no heavy imports.

The driver plans shards and hands these to workers; keeping them free of torch and
transformers lets the driver start in a fraction of a second instead of importing a framework
it never uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job.corpus import MAX_RECORD_BYTES, Fields

# What the client may ask of the job beyond its tasks (job/pipelines/__init__.py): its defaults.
# The client reads the same file (raybake/spec.py), so the two cannot disagree.
INTERFACE = json.loads((Path(__file__).parent / "interface.json").read_text())
DEFAULT_MODEL: str = INTERFACE["default_model"]
DEFAULT_TEXT_FIELD: str = INTERFACE["default_text_field"]
# How the client hands the job what no command line may show (job/__main__.py, job/credentials.py).
SPEC_FLAG: str = INTERFACE["spec_flag"]
SPEC_VARIABLE: str = INTERFACE["spec_variable"]
CREDENTIALS_VARIABLE: str = INTERFACE["credentials_variable"]
# The lines around the traceback of a failure: the log keeps it, a follower shows the last line only.
TRACEBACK_BEGIN, TRACEBACK_END = INTERFACE["traceback_markers"]
# Padded tokens per batch when --token-budget is not given. A GPU needs big batches to stay
# busy. On a CPU the cost per token is flat once a batch fills the matrix units, and the cost per
# batch (Python, dispatch) is fixed: a small model needs more tokens per batch to amortise it.
# The CPU budget is scaled by the model's width against MiniLM's 384, so MiniLM gets
# CPU_TOKEN_BUDGET and a 32-wide test model twelve times more, within the bounds.
TOKEN_BUDGET = {"cpu": 2048, "cuda": 65536}
CPU_REFERENCE_WIDTH = 384
CPU_TOKEN_BUDGET_MAX = 32768
# ner: how sub-word tags become entities; the values of transformers' AggregationStrategy
# (tests/unit/test_ner_classify.py ties them), named here so the driver need not import transformers.
AGGREGATIONS = ("none", "simple", "first", "average", "max")
# Long documents (--long-documents): `truncate` keeps one row per document, cut at the model's
# length and marked `truncated` (what sentence-transformers' encode and transformers' pipelines
# do by default); `chunk` cuts it into overlapping windows of the model's length. The tasks
# where a window's result means something: embed (a row per window, or their mean per document)
# and ner (the entities of all windows, as the token-classification pipeline's `stride` does).
LONG_DOCUMENTS = ("truncate", "chunk")
# Tokens shared by consecutive windows: two or three sentences, so that a sentence or an entity
# cut at one window's end is whole in the next. On a 512-token window it costs 14% more tokens.
DEFAULT_STRIDE = 64
DOCUMENT_POOLING = ("none", "mean")


def token_budget(device: str, model_config: Any) -> int:
    if device != "cpu":
        return TOKEN_BUDGET.get(device, TOKEN_BUDGET["cuda"])
    width = getattr(model_config, "hidden_size", None) or CPU_REFERENCE_WIDTH
    scaled = TOKEN_BUDGET["cpu"] * CPU_REFERENCE_WIDTH // max(1, width)
    return max(TOKEN_BUDGET["cpu"], min(CPU_TOKEN_BUDGET_MAX, scaled))


@dataclass(frozen=True)
class TaskOptions:
    max_length: int | None = None
    top_k: int = 1
    max_new_tokens: int = 32
    dtype: str = "auto"
    device: str = "auto"
    revision: str | None = None
    aggregation: str = "simple"
    prompt: str | None = None  # embed: text before each document (None: the model's default prompt)
    prompt_name: str | None = None  # embed: one of the model's own prompts, by name
    # generate (job/pipelines/generate.py): the chat template rule, the sampling and the stops.
    chat: str = "auto"  # auto: where the tokenizer has a chat template; on: required; off: never
    system: str | None = None
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    long_documents: str = "truncate"
    stride: int = DEFAULT_STRIDE
    document_pooling: str = "none"


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
    max_record_bytes: int = MAX_RECORD_BYTES

    def model_settings(self) -> tuple[str, str, TaskOptions, int]:
        """What a worker loads (the rest is per job): workers with the same serve the same jobs."""
        return (self.task, self.model, self.options, self.threads)


DEFAULT_MAX_ERROR_RATE = 0.05


@dataclass(frozen=True)
class RunConfig:
    worker: WorkerConfig
    split_bytes: int | None  # None: auto_split_bytes of the corpus
    workers: int | None
    cpus_per_worker: float | None
    retries: int
    check_only: bool
    # Workers stay this long after the job for the next one of the same model (0: they end with it).
    keep_warm_s: float = 0
    # More `model failed` rows than this share of the documents read fails the job.
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    # The command as the manifest shows it: options decoded, URL credentials masked.
    command: str = ""
