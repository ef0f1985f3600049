"""Sentence embeddings: mean-pooled over real tokens, L2-normalised, float32."""

from __future__ import annotations

import pyarrow as pa
import torch
from transformers import AutoModel

from job.pipelines.base import ModelBatch, Task


class Embed(Task):
    name = "embed"

    def load_model(self) -> torch.nn.Module:
        return AutoModel.from_pretrained(self.model_path, **self._from_pretrained_kwargs())

    def columns(self) -> list[pa.Field]:
        return [pa.field("embedding", pa.list_(pa.float32(), self.config.hidden_size))]

    def infer(self, batch: ModelBatch) -> list[dict]:
        return [{"embedding": v} for v in self.infer_columns(batch)["embedding"]]

    def infer_columns(self, batch: ModelBatch) -> dict:
        hidden = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        mask = batch.attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        vectors = torch.nn.functional.normalize(mean.float(), dim=-1).cpu().numpy()
        return {"embedding": vectors}
