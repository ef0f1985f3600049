"""ner and classify against transformers' own pipelines, on the same model and text.

Each Task runs its texts as one padded batch, as a worker does; the pipeline runs each text alone.
The models are tiny and random, with heads made loud enough that tags change inside words and
labels change from text to text: a wrong aggregation or a wrong score function fails these."""

import pytest
import torch
from models import make_classify_model, make_ner_model, make_slow_tokenizer_ner_model
from pipeline_reference import (
    CLASSIFY_TEXTS,
    NER_TEXTS,
    assert_same_entities,
    assert_same_labels,
    reference_entities,
    reference_labels,
)
from transformers.pipelines.token_classification import AggregationStrategy

from job.config import AGGREGATIONS, TaskOptions
from job.pipelines.classify import Classify
from job.pipelines.ner import Ner

TOKENIZERS = ["wordpiece", "bpe"]
HEADS = ["single", "multi", "regression", "one"]


@pytest.fixture(scope="module")
def ner_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ner")
    return {kind: make_ner_model(root / kind, kind) for kind in TOKENIZERS}


@pytest.fixture(scope="module")
def classify_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    return {head: make_classify_model(root / head, head) for head in HEADS}


def batch_rows(task, texts):
    """The task's rows for `texts` as one right-padded batch."""
    encoded = task.encode(texts)
    batch = task.collate(encoded.ids, texts, encoded.offsets, encoded.special)
    with torch.inference_mode():
        return task.infer(batch)


def test_the_aggregations_are_the_pipelines_own():
    assert list(AGGREGATIONS) == [s.value for s in AggregationStrategy]


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_ner_equals_the_token_classification_pipeline(ner_models, tokenizer, aggregation):
    model = ner_models[tokenizer]
    rows = batch_rows(Ner(model, TaskOptions(aggregation=aggregation)), NER_TEXTS)
    found = 0
    for text, row in zip(NER_TEXTS, rows, strict=True):
        want = reference_entities(model, aggregation, text)
        assert_same_entities(row["entities"], want)
        found += len(want)
    assert found > 10


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_ner_tags_give_the_strategies_something_to_disagree_on(ner_models, tokenizer):
    """The check above can fail: raybake's rows under one strategy do not pass as another's."""
    model = ner_models[tokenizer]
    tags = {e["entity"] for text in NER_TEXTS for e in reference_entities(model, "none", text)}
    assert tags == {"B-PER", "I-PER", "B-ORG", "I-ORG"}
    rows = {a: batch_rows(Ner(model, TaskOptions(aggregation=a)), NER_TEXTS) for a in ("simple", "first", "max")}
    for got, wrong in (("simple", "first"), ("first", "average"), ("max", "average")):
        with pytest.raises(AssertionError):
            for text, row in zip(NER_TEXTS, rows[got], strict=True):
                assert_same_entities(row["entities"], reference_entities(model, wrong, text))


def test_ner_rows_hold_the_pipelines_fields_and_spans_into_the_text(ner_models):
    model = ner_models["bpe"]
    (grouped,) = batch_rows(Ner(model, TaskOptions(aggregation="first")), NER_TEXTS[:1])
    (tokens,) = batch_rows(Ner(model, TaskOptions(aggregation="none")), NER_TEXTS[:1])
    assert grouped["entities"] and tokens["entities"]
    assert all(e["entity"] is None and e["index"] is None for e in grouped["entities"])
    assert all(e["entity_group"] is None and e["index"] >= 1 for e in tokens["entities"])
    assert all(0 <= e["start"] <= e["end"] <= len(NER_TEXTS[0]) for e in grouped["entities"] + tokens["entities"])


def test_ner_refuses_a_slow_tokenizer_in_one_line(tmp_path):
    model = make_slow_tokenizer_ner_model(tmp_path / "slow")
    with pytest.raises(ValueError, match=r"^ner needs a fast tokenizer \(character offsets\)") as refused:
        Ner(model, TaskOptions(aggregation="first"))
    assert "\n" not in str(refused.value) and repr(model) in str(refused.value)


@pytest.mark.parametrize("top_k", [1, 2, 10])
@pytest.mark.parametrize("head", HEADS)
def test_classify_equals_the_text_classification_pipeline(classify_models, head, top_k):
    model = classify_models[head]
    rows = batch_rows(Classify(model, TaskOptions(top_k=top_k)), CLASSIFY_TEXTS)
    wants = [reference_labels(model, text) for text in CLASSIFY_TEXTS]
    for row, want in zip(rows, wants, strict=True):
        assert_same_labels(row, want, top_k)
    if head in ("single", "multi"):
        assert len({w[0]["label"] for w in wants}) > 1  # labels differ from text to text


def test_classify_heads_get_the_pipelines_function(classify_models):
    """Regression scores are raw values, and the same weights with one label and no problem type
    give their sigmoid; multi-label scores are independent (they need not sum to 1)."""
    regression = [reference_labels(classify_models["regression"], t)[0]["score"] for t in CLASSIFY_TEXTS]
    one = [reference_labels(classify_models["one"], t)[0]["score"] for t in CLASSIFY_TEXTS]
    multi = [sum(x["score"] for x in reference_labels(classify_models["multi"], t)) for t in CLASSIFY_TEXTS]
    assert min(regression) < 0 < 1 < max(regression)
    assert one == pytest.approx(torch.sigmoid(torch.tensor(regression)).tolist(), abs=1e-6)
    assert any(abs(s - 1) > 0.1 for s in multi)
