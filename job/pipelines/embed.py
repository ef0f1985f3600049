"""Sentence embeddings, computed as sentence-transformers computes them.

A model with a sentence-transformers configuration (modules.json) is loaded by
sentence-transformers itself: its pooling mode, Dense layers, Normalize, truncation length,
lower-casing and prompts are the model's own. raybake keeps its own side of the work: it
tokenizes with the model's tokenizer, cuts length-sorted token-budget batches, and hands each
padded batch to the loaded modules, whose output goes to Arrow as one NumPy array. A model
without that configuration is mean-pooled and L2-normalised, by the same library's modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from sentence_transformers.util import is_sentence_transformer_model

from job.pipelines.base import Encoded, ModelBatch, ModelRefused, Task


class Embed(Task):
    encoder: SentenceTransformer

    def load_model(self) -> torch.nn.Module:
        self.encoder = self._load_encoder()
        first = self.encoder[0]
        if not isinstance(first, Transformer) or set(first.modality_config) != {"text"}:
            raise ModelRefused(
                f"model {self.model_name!r}: raybake embeds text through a transformers model as the first "
                f"sentence-transformers module; this one starts with {first!r}"
            )
        # sentence-transformers' tokenizer: its model_max_length is the model's max_seq_length.
        self.use_tokenizer(first.tokenizer)
        self.prompt = self._prompt()
        if self.prompt and self.chunked:
            # Each window would need the prompt before its own text, and its span would count it.
            raise ModelRefused(
                f"--long-documents chunk with a prompt ({self.prompt!r}) is not supported yet: each window "
                "would need it; pass --prompt '' to embed the chunks without one, or --long-documents truncate"
            )
        # A document's mean of its chunks' vectors is normalised again where the model normalises.
        self.normalizes = any(isinstance(module, Normalize) for module in self.encoder)
        # Pooling with include_prompt=False leaves out the prompt's tokens; the library counts them.
        self.prompt_length = (
            self.encoder.preprocess([""], prompt=self.prompt).get("prompt_length") if self.prompt else None
        )
        self.dimension = self.encoder.get_embedding_dimension()
        # The library feeds the model every input its tokenizer makes. A single text's token types
        # are all 0, which is a model's default only where it has a token-type embedding of its own.
        self.token_types = "token_type_ids" in self.tokenizer.model_input_names
        return self.encoder

    def _load_encoder(self) -> SentenceTransformer:
        revision = self.options.revision
        device = str(self.device)
        if is_sentence_transformer_model(self.model_path, revision=revision):
            return SentenceTransformer(
                self.model_path, device=device, revision=revision, model_kwargs={"dtype": self.dtype}
            )
        hub = {"revision": revision}
        transformer = Transformer(
            self.model_path, model_kwargs={**hub, "dtype": self.dtype}, processor_kwargs=hub, config_kwargs=hub
        )
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        return SentenceTransformer(modules=[transformer, pooling, Normalize()], device=device)

    def _prompt(self) -> str:
        """The text put before each document: --prompt, the model's prompt --prompt-name names, or
        the model's default prompt (none if it has none), as SentenceTransformer.encode picks it."""
        options, prompts = self.options, self.encoder.prompts
        if options.prompt is not None:
            return options.prompt
        name = options.prompt_name or self.encoder.default_prompt_name
        if name is None:
            return ""
        if name not in prompts:
            raise ModelRefused(
                f"--prompt-name {name!r}: model {self.model_name!r} has no such prompt; "
                f"its prompts are {sorted(prompts)!r} (or give the text with --prompt)"
            )
        return prompts[name] or ""

    def columns(self) -> list[pa.Field]:
        return [pa.field("embedding", pa.list_(pa.float32(), self.dimension))]

    def encode(self, texts: list[str]) -> Encoded:
        # sentence-transformers puts the prompt before the text and then tokenizes and truncates
        # the whole: the same tokens come out here.
        return super().encode([self.prompt + t for t in texts] if self.prompt else texts)

    def infer(self, batch: ModelBatch) -> list[dict]:
        return [{"embedding": v} for v in self.infer_columns(batch)["embedding"]]

    def infer_columns(self, batch: ModelBatch) -> dict:
        features: dict[str, Any] = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if self.token_types:
            features["token_type_ids"] = torch.zeros_like(batch.input_ids)
        if self.prompt_length:
            features["prompt_length"] = self.prompt_length
        vectors = self.encoder(features)["sentence_embedding"]
        return {"embedding": vectors.float().cpu().numpy()}

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
