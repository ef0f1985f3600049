"""Sequence classification: the top label and score, and the top-k labels with scores.

Scores are what `pipeline("text-classification", top_k=None)` gives, because they come from that
pipeline's own postprocess: its choice of function from the model's config (softmax for
single-label, sigmoid for multi-label and for one label without a problem type, the raw value for
regression), and its order of labels, applied to each row of raybake's batched logits.
"""

from __future__ import annotations

import pyarrow as pa
import torch
from transformers import AutoModelForSequenceClassification, TextClassificationPipeline

from job.config import TaskOptions
from job.pipelines.base import ModelBatch, Task

LABEL_SCORE = pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float32())])


class Classify(Task):
    def __init__(self, model: str, options: TaskOptions) -> None:
        super().__init__(model, options)
        self.pipeline = TextClassificationPipeline(model=self.model, tokenizer=self.tokenizer, device=self.model.device)

    def load_model(self) -> torch.nn.Module:
        return AutoModelForSequenceClassification.from_pretrained(self.model_path, **self._from_pretrained_kwargs())

    def columns(self) -> list[pa.Field]:
        return [
            pa.field("label", pa.string()),
            pa.field("score", pa.float32()),
            pa.field("top_k", pa.list_(LABEL_SCORE)),
        ]

    def infer(self, batch: ModelBatch) -> list[dict]:
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float().cpu()
        k = min(self.options.top_k, logits.shape[-1])
        rows = []
        for row in logits:
            # `_legacy=False` is what the pipeline's call passes for any explicit top_k: the labels
            # sorted by score, best first.
            top = self.pipeline.postprocess({"logits": row[None]}, top_k=k, _legacy=False)
            rows.append({"label": top[0]["label"], "score": top[0]["score"], "top_k": top})
        return rows
