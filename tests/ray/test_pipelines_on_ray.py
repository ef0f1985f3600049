"""ner and classify through `invoke submit` on a real local Ray, row for row against
transformers' pipelines on the same model and text (tests/unit/test_ner_classify.py covers every
strategy and head at the Task level)."""

import json
import re

import pyarrow.parquet as pq
import pytest
from models import make_classify_model, make_ner_model, make_slow_tokenizer_ner_model
from pipeline_reference import (
    CLASSIFY_TEXTS,
    NER_TEXTS,
    assert_same_entities,
    assert_same_labels,
    reference_entities,
    reference_labels,
)
from raycluster import invoke


def submit(head, tmp_path, texts, *args):
    """`invoke submit` of `texts` as JSONL, as a user runs it."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return invoke(head.invoke_env(tmp_path / "results"), "submit", "--corpus", str(corpus), "--id-field", "id", *args)


def rows_of(tmp_path, done, count):
    """A successful submit's rows, in text order."""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job_id = re.search(r"submitted (\S+);", done.stdout).group(1)
    by_id = {r["id"]: r for r in pq.read_table(tmp_path / "results" / job_id / "parts").to_pylist()}
    return [by_id[f"d{i}"] for i in range(count)]


@pytest.mark.parametrize(("tokenizer", "aggregation"), [("wordpiece", "first"), ("bpe", "average")])
def test_ner_through_invoke_submit_equals_the_pipeline(ray_head, tmp_path, tokenizer, aggregation):
    model = make_ner_model(tmp_path / "model", tokenizer)
    args = ("--task", "ner", "--model", model, "--job-args", f"--aggregation {aggregation} --token-budget 96")
    rows = rows_of(tmp_path, submit(ray_head, tmp_path, NER_TEXTS, *args), len(NER_TEXTS))
    found = 0
    for text, row in zip(NER_TEXTS, rows, strict=True):
        want = reference_entities(model, aggregation, text)
        assert_same_entities(row["entities"], want)
        found += len(want)
    assert found > 10


def test_multi_label_classify_through_invoke_submit_equals_the_pipeline(ray_head, tmp_path):
    model = make_classify_model(tmp_path / "model", "multi")
    done = submit(ray_head, tmp_path, CLASSIFY_TEXTS, "--task", "classify", "--model", model, "--job-args", "--top-k 3")
    rows = rows_of(tmp_path, done, len(CLASSIFY_TEXTS))
    for text, row in zip(CLASSIFY_TEXTS, rows, strict=True):
        assert_same_labels(row, reference_labels(model, text), 3)


def test_ner_with_a_slow_tokenizer_is_refused_with_the_reason(ray_head, tmp_path):
    model = make_slow_tokenizer_ner_model(tmp_path / "model")
    done = submit(ray_head, tmp_path, NER_TEXTS[:1], "--task", "ner", "--model", model)
    assert done.returncode != 0
    # A refusal (job.pipelines.base.ModelRefused) reaches the driver as the worker's word, not as
    # Ray's traceback of a failed actor: the job's last word is one line.
    errors = [line for line in done.stdout.splitlines() if line.startswith("raybake: error:")]
    assert errors[-1].startswith("raybake: error: ner needs a fast tokenizer"), done.stdout[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
