"""Text generation: batched, left-padded, greedy, at most --max-new-tokens new tokens."""

from __future__ import annotations

import pyarrow as pa
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from job.pipelines.base import ModelBatch, Task


class Generate(Task):
    name = "generate"
    # Decoder-only models continue from the last position: padding must come first.
    padding_side = "left"

    def load_model(self) -> torch.nn.Module:
        auto = AutoModelForSeq2SeqLM if self.config.is_encoder_decoder else AutoModelForCausalLM
        return auto.from_pretrained(self.model_path, **self._from_pretrained_kwargs())

    @property
    def reserved_tokens(self) -> int:
        return 0 if self.config.is_encoder_decoder else self.options.max_new_tokens

    def columns(self) -> list[pa.Field]:
        return [pa.field("generated_text", pa.string())]

    def infer(self, batch: ModelBatch) -> list[dict]:
        out = self.model.generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            max_new_tokens=self.options.max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new = out if self.config.is_encoder_decoder else out[:, batch.input_ids.shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [{"generated_text": t} for t in texts]
