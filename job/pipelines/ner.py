"""Named entities: per-token labels aggregated into entity spans of the original text.

Aggregation follows the "simple" strategy of transformers' pipeline: consecutive tokens of the
same entity type merge (a B- tag starts a new entity), the score is the mean of their scores,
and spans are character offsets into the document.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoModelForTokenClassification

from job.pipelines.base import ModelBatch, Task

ENTITY = pa.struct(
    [
        pa.field("entity_group", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("word", pa.string()),
        pa.field("start", pa.int32()),
        pa.field("end", pa.int32()),
    ]
)


def aggregate(labels: list[str], scores: list[float], offsets: list[tuple[int, int]], text: str) -> list[dict]:
    entities: list[dict] = []
    current: dict | None = None
    token_scores: list[float] = []

    def close() -> None:
        if current is not None:
            current["score"] = sum(token_scores) / len(token_scores)
            current["word"] = text[current["start"] : current["end"]]
            entities.append(current)

    for label, score, (start, end) in zip(labels, scores, offsets, strict=True):
        if start == end:  # special tokens carry no text
            continue
        prefix, _, kind = label.partition("-") if "-" in label else ("", "", label)
        if label == "O":
            close()
            current, token_scores = None, []
            continue
        if current is not None and current["entity_group"] == kind and prefix != "B":
            current["end"] = end
            token_scores.append(score)
            continue
        close()
        current, token_scores = {"entity_group": kind, "start": start, "end": end}, [score]
    close()
    return entities


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
    name = "ner"
    wants_offsets = True

    def load_model(self) -> torch.nn.Module:
        return AutoModelForTokenClassification.from_pretrained(self.model_path, **self._from_pretrained_kwargs())

    def columns(self) -> list[pa.Field]:
        return [pa.field("entities", pa.list_(ENTITY))]

    def infer(self, batch: ModelBatch) -> list[dict]:
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
        scores, ids = torch.softmax(logits, dim=-1).max(dim=-1)
        rows = []
        for row, (text, offsets) in enumerate(zip(batch.texts, batch.offsets or [], strict=True)):
            n = len(offsets)
            labels = [self.config.id2label[i] for i in ids[row, :n].tolist()]
            rows.append({"entities": aggregate(labels, scores[row, :n].tolist(), offsets, text)})
        return rows

    def merge_windows(self, columns: dict[str, pa.Array], starts: np.ndarray) -> dict[str, pa.Array]:
        windows = columns["entities"].to_pylist()
        merged = [merge_windows(windows[a:b]) for a, b in itertools.pairwise(starts)]
        return {"entities": pa.array(merged, pa.list_(ENTITY))}
