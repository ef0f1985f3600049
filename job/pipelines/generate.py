"""Text generation: batched, left-padded, greedy, at most --max-new-tokens new tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from job.pipelines.base import ModelBatch, Task

if TYPE_CHECKING:
    # The type transformers gives what these Auto classes load: a PreTrainedModel that is also a
    # GenerationMixin (PreTrainedModel alone no longer has `generate`).
    from transformers.models.auto.modeling_auto import _BaseModelWithGenerate


class Generate(Task):
    name = "generate"
    # Decoder-only models continue from the last position: padding must come first.
    padding_side = "left"
    # Narrower than Task's torch Module: a model with `generate`.
    model: _BaseModelWithGenerate

    def load_model(self) -> _BaseModelWithGenerate:
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
