"""Named entities: per-token tags turned into entities with character spans of the document.

The entities are what `pipeline("token-classification", aggregation_strategy=...)` gives for the
same model and text, because they come from that pipeline's own post-processing (which tokens are
sub-words, how a word's tokens agree on one tag, how B-/I- tags group, the word it decodes),
applied to the logits of raybake's length-sorted batches instead of one document at a time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoModelForTokenClassification, TokenClassificationPipeline
from transformers.pipelines.token_classification import AggregationStrategy

from job.config import TaskOptions
from job.pipelines.base import ModelBatch, ModelRefused, Task

# One entity as the pipeline returns it. Grouped strategies fill `entity_group`; `none` gives one
# row per tagged token: its tag in `entity` and its token position in `index`. The other fields
# are the strategy's null.
ENTITY = pa.struct(
    [
        pa.field("entity_group", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("word", pa.string()),
        pa.field("start", pa.int32()),
        pa.field("end", pa.int32()),
        pa.field("entity", pa.string()),
        pa.field("index", pa.int32()),
    ]
)
# The pipeline's default: tokens and groups tagged "O" are no entity.
IGNORE_LABELS = ["O"]


@dataclass(frozen=True)
class Window:
    """One tokenized sequence of a document and the model's logits for it, padding cut off.
    Offsets are character offsets into the document the entities are reported against."""

    logits: torch.Tensor  # (tokens, labels), float32, on the CPU
    input_ids: torch.Tensor  # (tokens,)
    offsets: list[tuple[int, int]]
    special: list[int]  # 1 for a special token: the pipeline skips it


def merge_windows(windows: list[list[dict]]) -> list[dict]:
    """A document's entities from those of its windows (each window's aggregated on its own, with
    offsets into the document), each entity once where windows overlap: the token-classification
    pipeline's own rule under `stride`, called, not copied (it uses nothing of the pipeline: among
    entities that overlap the longest stays, on a tie the higher score)."""
    entities = [entity for window in windows for entity in window]
    if len(windows) < 2:
        return entities
    # Here: transformers' pipelines package takes a second to import, and only chunk needs it.
    from transformers import TokenClassificationPipeline

    return TokenClassificationPipeline.aggregate_overlapping_entities(None, entities)  # type: ignore[arg-type]


class Ner(Task):
    wants_offsets = True

    def __init__(self, model: str, options: TaskOptions) -> None:
        super().__init__(model, options)
        if not self.tokenizer.is_fast:
            # Spans need the offsets only a fast (Rust) tokenizer gives, and first, average and
            # max need its word boundaries too.
            raise ModelRefused(
                f"ner needs a fast tokenizer (character offsets), and {model!r} has only a slow one "
                f"({type(self.tokenizer).__name__}): give a model directory with a tokenizer.json"
            )
        self.strategy = AggregationStrategy(options.aggregation)
        self.pipeline = TokenClassificationPipeline(
            model=self.model, tokenizer=self.tokenizer, device=self.model.device
        )

    def load_model(self) -> torch.nn.Module:
        return AutoModelForTokenClassification.from_pretrained(self.model_path, **self._from_pretrained_kwargs())

    def columns(self) -> list[pa.Field]:
        return [pa.field("entities", pa.list_(ENTITY))]

    def infer(self, batch: ModelBatch) -> list[dict]:
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float().cpu()
        input_ids = batch.input_ids.cpu()
        rows = []
        for row, (text, offsets, special) in enumerate(
            zip(batch.texts, batch.offsets or [], batch.special or [], strict=True)
        ):
            n = len(offsets)  # right padding: the document's tokens come first
            window = Window(logits=logits[row, :n], input_ids=input_ids[row, :n], offsets=offsets, special=special)
            rows.append({"entities": self.entities(text, [window])})
        return rows

    def entities(self, text: str, windows: list[Window]) -> list[dict[str, Any]]:
        """The entities of one document from its windows, by the pipeline's own postprocess:
        softmax, skipping special tokens, sub-word detection, the strategy, dropping "O" and, for
        more than one window, keeping one of entities that overlap."""
        outputs = [
            {
                "logits": w.logits[None],
                "input_ids": w.input_ids[None],
                "offset_mapping": [w.offsets],
                "special_tokens_mask": torch.tensor(w.special)[None],
                "sentence": text,
            }
            for w in windows
        ]
        found = self.pipeline.postprocess(outputs, aggregation_strategy=self.strategy, ignore_labels=IGNORE_LABELS)
        return [_row(e) for e in found]

    def merge_windows(self, columns: dict[str, pa.Array], starts: np.ndarray) -> dict[str, pa.Array]:
        windows = columns["entities"].to_pylist()
        merged = [merge_windows(windows[a:b]) for a, b in itertools.pairwise(starts)]
        return {"entities": pa.array(merged, pa.list_(ENTITY))}


def _row(entity: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's entity (NumPy scalars) as plain values, with every field of ENTITY."""
    return {field.name: _plain(entity.get(field.name)) for field in ENTITY}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
