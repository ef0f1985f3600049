import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from models import CLASS_LABELS, MINILM, NER_LABELS, make_tiny_model
from transformers import AutoModel, AutoTokenizer

from job.config import TaskOptions, WorkerConfig
from job.corpus import Fields, plan_shards, scan
from job.output import part_name
from job.pipelines import TASKS
from job.pipelines.base import Task
from job.worker import DeviceFailed, ShardWorker

TEXTS = ["The cat sat on the mat.", "Ray spreads work over GPUs.", "x", "A much longer sentence " * 20]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {task: make_tiny_model(task, root / task) for task in ("classify", "ner", "generate")}


def run_worker(tmp_path, task, model, texts, **options):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    config = WorkerConfig(
        task=task,
        model=model,
        options=TaskOptions(**options),
        fields=Fields(),
        corpus=str(corpus),
        output=str(tmp_path / "out"),
        token_budget=64,
        max_batch_size=8,
        threads=1,
    )
    worker = ShardWorker(config)
    return (worker, *process_corpus(worker, corpus))


def process_corpus(worker, corpus):
    """The worker's stats and output rows for a one-shard corpus."""
    _, files = scan(str(corpus))
    (shard,) = plan_shards(files, 1 << 20)
    stats = worker.process(shard).to_json()
    return stats, pq.read_table(f"{worker.config.output}/parts/{part_name(shard)}").to_pylist()


def test_tasks_registry_names_each_task_once():
    # The documented tasks are there; a new one is its module, its test and a registry line, no edit here.
    assert {"classify", "embed", "generate", "ner"} <= set(TASKS)
    assert all(isinstance(TASKS[name], type) and issubclass(TASKS[name], Task) for name in TASKS)


def test_embed_matches_plain_transformers_mean_pooling(tmp_path):
    worker, stats, rows = run_worker(tmp_path, "embed", MINILM, TEXTS)
    tokenizer, model = AutoTokenizer.from_pretrained(MINILM), AutoModel.from_pretrained(MINILM)
    with torch.no_grad():
        batch = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    got = np.array([r["embedding"] for r in rows], dtype=np.float32)
    assert got.shape == (4, 384)
    assert np.all(np.sum(got * expected, axis=1) >= 0.999)
    assert stats["ok"] == 4 and stats["error"] == 0
    # Token-budget batches: more than one batch for these lengths, little padding.
    assert stats["batches"] > 1 and stats["padded_tokens"] >= stats["real_tokens"]


def test_long_documents_are_truncated_and_counted(tmp_path):
    _, stats, rows = run_worker(tmp_path, "embed", MINILM, ["word " * 2000, "short"], max_length=32)
    assert [r["truncated"] for r in rows] == [True, False]
    assert rows[0]["n_tokens"] == 32
    assert stats["truncated"] == 1


def test_classify_gives_label_score_and_top_k(tmp_path, tiny_models):
    _, _, rows = run_worker(tmp_path, "classify", tiny_models["classify"], TEXTS, top_k=2)
    for row in rows:
        assert row["label"] in CLASS_LABELS.values()
        assert len(row["top_k"]) == 2
        assert row["top_k"][0]["label"] == row["label"]
        assert row["top_k"][0]["score"] >= row["top_k"][1]["score"]
        assert 0.0 <= row["score"] <= 1.0


def test_ner_gives_entities_with_spans_into_the_text(tmp_path, tiny_models):
    _, _, rows = run_worker(tmp_path, "ner", tiny_models["ner"], TEXTS)
    types = {v.split("-")[-1] for v in NER_LABELS.values()} - {"O"}
    spans = 0
    for text, row in zip(TEXTS, rows, strict=True):
        for e in row["entities"]:
            assert e["entity_group"] in types
            assert 0 <= e["start"] < e["end"] <= len(text)
            spans += 1
    assert spans > 0  # random weights still tag something


def test_generate_returns_text_for_each_document(tmp_path, tiny_models):
    worker, _, rows = run_worker(tmp_path, "generate", tiny_models["generate"], TEXTS, max_new_tokens=5)
    assert worker.task.tokenizer.padding_side == "left"
    assert all(isinstance(r["generated_text"], str) for r in rows)
    assert worker.task.max_length == 128 - 5


def test_a_model_failure_costs_only_the_failing_documents(tmp_path, monkeypatch):
    worker, _, _ = run_worker(tmp_path, "embed", MINILM, ["warm up"])
    real_infer = worker.task.infer_columns

    def infer(batch):
        if any("poison" in t for t in batch.texts):
            raise RuntimeError("boom")
        return real_infer(batch)

    monkeypatch.setattr(worker.task, "infer_columns", infer)
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ["a b", "poison pill", "c d", "e f"])
    )
    stats, rows = process_corpus(worker, tmp_path / "corpus.jsonl")
    assert [r["error"] for r in rows] == [None, "model failed: RuntimeError: boom", None, None]
    assert stats["ok"] == 3 and stats["error"] == 1


@pytest.mark.parametrize(
    "error",
    [RuntimeError("CUDA error: device-side assert triggered"), torch.OutOfMemoryError("CUDA out of memory")],
    ids=["cuda-assert", "oom"],
)
def test_a_sticky_device_error_fails_the_shard_instead_of_turning_into_model_failed_rows(tmp_path, monkeypatch, error):
    worker, _, _ = run_worker(tmp_path, "embed", MINILM, ["warm up"])
    shutil.rmtree(tmp_path / "out")
    real_infer, calls = worker.task.infer_columns, []

    def infer(batch):
        calls.append(len(batch.texts))
        if len(calls) >= 2:  # from its second batch on, as a device-side assert does
            raise error
        return real_infer(batch)

    monkeypatch.setattr(worker.task, "infer_columns", infer)
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": f"doc {i} " * 9}) + "\n" for i in range(40)))
    with pytest.raises(DeviceFailed, match=f"the device failed, every later batch would: {type(error).__name__}"):
        process_corpus(worker, tmp_path / "corpus.jsonl")
    assert not list((tmp_path / "out" / "parts").glob("part-*.parquet"))  # no part: the shard is not done
    # A CUDA error fails at once; an OOM only once its batch was split down to one document.
    if isinstance(error, torch.OutOfMemoryError):
        assert calls[-1] == 1
    else:
        assert len(calls) == 2 and calls[-1] > 1
