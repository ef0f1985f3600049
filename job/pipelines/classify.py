"""Sequence classification: the top label and score, and the top-k labels with scores."""

from __future__ import annotations

import pyarrow as pa
import torch
from transformers import AutoModelForSequenceClassification

from job.pipelines.base import ModelBatch, Task

LABEL_SCORE = pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float32())])


class Classify(Task):
    name = "classify"

    def load_model(self) -> torch.nn.Module:
        return AutoModelForSequenceClassification.from_pretrained(self.model_path, **self._from_pretrained_kwargs())

    def columns(self) -> list[pa.Field]:
        return [
            pa.field("label", pa.string()),
            pa.field("score", pa.float32()),
            pa.field("top_k", pa.list_(LABEL_SCORE)),
        ]

    def infer(self, batch: ModelBatch) -> list[dict]:
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
        # Multi-label models score each label on its own; the rest share one distribution.
        multi = self.config.problem_type == "multi_label_classification"
        probs = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)
        k = min(self.options.top_k, probs.shape[-1])
        scores, ids = probs.topk(k, dim=-1)
        rows = []
        for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True):
            top = [{"label": self.config.id2label[i], "score": s} for i, s in zip(row_ids, row_scores, strict=True)]
            rows.append({"label": top[0]["label"], "score": top[0]["score"], "top_k": top})
        return rows
