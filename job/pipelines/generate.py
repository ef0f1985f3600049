"""Text generation: what `model.generate` gives with the same settings, batched.

A prompt is the document's text (or its --prompt-template filled in), wrapped as the user's turn
in the tokenizer's chat template where it has one (--chat), after an optional --system turn.
Prompts are left-padded with an attention mask, so a document's output does not depend on the
other documents of its batch.

Sampling (--temperature > 0) draws each row from a torch.Generator of its own, seeded from
(--seed, document id): a document's sample is the same whatever batch it lands in, and is the
sample `model.generate(do_sample=True)` draws for that document alone after
`torch.manual_seed(document_seed(seed, id))`. Batches stay batches; the cost is one small draw
per row and step instead of one for the whole batch.

A row ends with `eos` (the model's end token), `stop` (a --stop string, left out of the text,
as OpenAI's and vLLM's APIs do) or `length` (--max-new-tokens).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteriaList,
    StopStringCriteria,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from job.config import TaskOptions
from job.pipelines.base import Encoded, ModelBatch, ModelRefused, Task

if TYPE_CHECKING:
    # The type transformers gives what these Auto classes load: a PreTrainedModel that is also a
    # GenerationMixin (PreTrainedModel alone no longer has `generate`).
    from transformers.models.auto.modeling_auto import _BaseModelWithGenerate


def document_seed(seed: int, doc_id: str) -> int:
    """The seed of one document's sample: from the job's seed and the document's id alone."""
    digest = hashlib.sha256(f"{seed}\0{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # torch takes a seed below 2**63 everywhere


class RowSampler(LogitsProcessor):
    """generate's own sampling step (temperature, then top-p, then a multinomial draw from the
    softmax), drawn per row from that row's generator. It returns scores where only the drawn
    token is finite, and runs as the last processor of a greedy generate, whose argmax then
    takes the draw: the processors generate makes from the model's generation config
    (repetition penalty, ...) still run first, as they do before its own sampling."""

    def __init__(self, *, temperature: float, top_p: float, generators: list[torch.Generator]) -> None:
        warpers: list[LogitsProcessor] = []
        if temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(temperature))
        if top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=top_p))
        self.warpers = LogitsProcessorList(warpers)
        self.generators = generators

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(self.warpers(input_ids, scores), dim=-1)
        drawn = torch.cat(
            [torch.multinomial(probs[row : row + 1], 1, generator=g) for row, g in enumerate(self.generators)]
        )
        only = torch.full_like(scores, -float("inf"))
        return cast(torch.FloatTensor, only.scatter_(1, drawn, 0.0))


class Generate(Task):
    # Decoder-only models continue from the last position: padding must come first.
    padding_side = "left"
    # Narrower than Task's torch Module: a model with `generate`.
    model: _BaseModelWithGenerate
    summed = ("prompt_tokens", "completion_tokens")

    def __init__(self, model: str, options: TaskOptions) -> None:
        super().__init__(model, options)
        has_template = bool(self.tokenizer.chat_template)
        if options.chat == "on" and not has_template:
            raise ModelRefused(f"--chat on: the tokenizer of {model!r} has no chat template; use --chat auto or off")
        self.chat = has_template and options.chat != "off"
        if options.system is not None and not self.chat:
            raise ModelRefused(f"--system needs a chat template, and the tokenizer of {model!r} has none")
        # The template writes the special tokens the model expects (BOS ...): none are added.
        self.add_special_tokens = not self.chat
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        # transformers' stop-string matching; made once, as it indexes the whole vocabulary.
        self.stops = (
            StoppingCriteriaList([StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(options.stop))])
            if options.stop
            else None
        )

    def load_model(self) -> _BaseModelWithGenerate:
        auto = AutoModelForSeq2SeqLM if self.config.is_encoder_decoder else AutoModelForCausalLM
        return auto.from_pretrained(self.model_path, **self._from_pretrained_kwargs())

    @property
    def reserved_tokens(self) -> int:
        return 0 if self.config.is_encoder_decoder else self.options.max_new_tokens

    def columns(self) -> list[pa.Field]:
        return [
            pa.field("generated_text", pa.string()),
            pa.field("finish_reason", pa.string()),
            pa.field("prompt_tokens", pa.int32()),
            pa.field("completion_tokens", pa.int32()),
        ]

    def encode(self, texts: list[str]) -> Encoded:
        if self.chat and texts:
            system = [{"role": "system", "content": self.options.system}] if self.options.system is not None else []
            conversations = [[*system, {"role": "user", "content": text}] for text in texts]
            rendered = self.tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)
            texts = cast(list[str], rendered)  # tokenize=False: one string per conversation
        return super().encode(texts)

    def infer(self, batch: ModelBatch) -> list[dict[str, Any]]:
        options = self.options
        sampler = None
        if options.temperature > 0:
            generators = [
                torch.Generator(device=self.device).manual_seed(document_seed(options.seed, doc_id))
                for doc_id in batch.doc_ids
            ]
            sampler = RowSampler(temperature=options.temperature, top_p=options.top_p, generators=generators)
        out = self.model.generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            max_new_tokens=options.max_new_tokens,
            do_sample=False,
            num_beams=1,
            # Sampling is --temperature's and --top-p's, not the model's generation config's.
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList([sampler]) if sampler else None,
            stopping_criteria=self.stops,
        )
        new = out if self.config.is_encoder_decoder else out[:, batch.input_ids.shape[1] :]
        if self.config.is_encoder_decoder:
            new = new[:, 1:]  # the decoder's start token
        prompt_tokens = batch.attention_mask.sum(dim=1).tolist()
        return [
            {**self._completion(tokens), "prompt_tokens": n}
            for tokens, n in zip(new.tolist(), prompt_tokens, strict=True)
        ]

    def _completion(self, tokens: list[int]) -> dict[str, Any]:
        """One row's text, completion tokens and finish reason, from what generate gave it: rows
        that finished early are padded to the batch's longest."""
        end = next((i for i, t in enumerate(tokens) if t in self.eos_ids), None)
        body = tokens if end is None else tokens[:end]
        text = self._decode(body)
        if self.options.stop and self._stop_at(text) is not None:
            # The token that completed a stop string: the shortest prefix whose text holds one.
            low, high = 1, len(body)
            while low < high:
                mid = (low + high) // 2
                if self._stop_at(self._decode(body[:mid])) is None:
                    low = mid + 1
                else:
                    high = mid
            text = self._decode(body[:low])
            return {"generated_text": text[: self._stop_at(text)], "completion_tokens": low, "finish_reason": "stop"}
        if end is not None:
            return {"generated_text": text, "completion_tokens": end + 1, "finish_reason": "eos"}
        return {"generated_text": text, "completion_tokens": len(tokens), "finish_reason": "length"}

    def _decode(self, tokens: list[int]) -> str:
        return cast(str, self.tokenizer.decode(tokens, skip_special_tokens=True))

    def _stop_at(self, text: str) -> int | None:
        """Where the first stop string starts in `text`, or None."""
        found = [at for at in (text.find(s) for s in self.options.stop) if at >= 0]
        return min(found) if found else None
