"""transformers' pipelines as the reference for raybake's ner and classify rows, and the
comparison both the unit and the Ray tests make: the same labels, spans and words, and scores
within SCORE_TOLERANCE."""

from __future__ import annotations

import functools
import warnings

import numpy as np
from transformers import pipeline

SCORE_TOLERANCE = 1e-4
# Multi-token words, accents, punctuation, a literal special token, a one-letter text and a
# text much longer than the rest (so a padded batch pads the others).
NER_TEXTS = [
    "Ada Lovelace met Charles Babbage in London.",
    "Grace Hopper wrote compilers for UNIVAC at Philadelphia, said Kowalczyk.",
    "Zürich's Émile-Jean visited São Paulo [SEP] and then Reykjavík!",
    "x",
    "Alan Turing worked at Bletchley Park during the war, and later in Manchester. " * 3,
]
CLASSIFY_TEXTS = [
    "The cat sat on the mat.",
    "Ray spreads work over GPUs.",
    "x",
    "Stocks fell sharply on Monday. " * 6,
    "What a wonderful game!",
    "Hello there",
]


@functools.cache
def ner_pipeline(model: str, aggregation: str):
    return pipeline("token-classification", model=model, aggregation_strategy=aggregation)


@functools.cache
def classify_pipeline(model: str):
    return pipeline("text-classification", model=model, top_k=None)


def reference_entities(model: str, aggregation: str, text: str) -> list[dict]:
    with warnings.catch_warnings():
        # A BPE without a sub-word prefix: the pipeline warns that it guesses words, per token.
        warnings.simplefilter("ignore", UserWarning)
        return ner_pipeline(model, aggregation)(text)


def reference_labels(model: str, text: str) -> list[dict]:
    """Every label with its score, best first."""
    (labels,) = classify_pipeline(model)([text])
    return labels


def assert_same_entities(got: list[dict], want: list[dict]) -> None:
    """One document's entities: raybake's row against the pipeline's list."""
    keys = ("entity_group", "entity", "word", "start", "end", "index")
    assert [tuple(e.get(k) for k in keys) for e in got] == [tuple(e.get(k) for k in keys) for e in want]
    assert_scores([e["score"] for e in got], [e["score"] for e in want])


def assert_same_labels(row: dict, want: list[dict], top_k: int) -> None:
    """One document's classify row against the pipeline's labels, best first."""
    assert [x["label"] for x in row["top_k"]] == [x["label"] for x in want[:top_k]]
    assert_scores([x["score"] for x in row["top_k"]], [x["score"] for x in want[:top_k]])
    assert row["label"] == want[0]["label"]
    assert_scores([row["score"]], [want[0]["score"]])


def assert_scores(got: list[float], want: list[float]) -> None:
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), rtol=0, atol=SCORE_TOLERANCE
    )
