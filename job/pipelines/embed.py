"""Sentence embeddings: mean-pooled over real tokens, L2-normalised, float32."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoModel

from job.pipelines.base import ModelBatch, Task


class Embed(Task):
    name = "embed"
    # Vectors come out L2-normalised: a document's mean of its chunks' is normalised again.
    normalizes = True

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

    @property
    def window_rows(self) -> bool:
        return self.chunked and self.options.document_pooling == "none"

    def merge_windows(self, columns: dict[str, pa.Array], starts: np.ndarray) -> dict[str, pa.Array]:
        """--document-pooling mean: a document's vector is the mean of its chunks' vectors."""
        vectors = columns["embedding"]
        flat = vectors.flatten().to_numpy().reshape(len(vectors), -1)
        mean = np.add.reduceat(flat, starts[:-1]) / np.diff(starts)[:, None]
        if self.normalizes:
            mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        values = pa.array(mean.astype(np.float32).reshape(-1), pa.float32())
        return {"embedding": pa.FixedSizeListArray.from_arrays(values, vectors.type.list_size)}
