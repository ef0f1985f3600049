"""--long-documents chunk: windows of the model's length with a --stride overlap, checked against
transformers' token-classification pipeline (its own `stride`) and sentence-transformers' encode of
each window's text."""

import itertools
import json
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from models import NER_WORDS, WINDOW, long_text, make_window_embed_model, make_window_ner_model
from sentence_transformers import SentenceTransformer
from transformers import pipeline

from job.__main__ import main
from job.config import TaskOptions, WorkerConfig
from job.corpus import Fields, plan_shards, scan
from job.manifest import build_manifest
from job.output import Output, part_name
from job.pipelines import TASKS
from job.pool import PoolRun
from job.spec import of as spec_of
from job.worker import ShardWorker

STRIDE = 16
LONG = long_text(2900)  # about 3,000 tokens: 27 windows of 128 at stride 16
SHORT = "alice smith went to paris"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("window-models")
    return {"ner": make_window_ner_model(root / "ner"), "embed": make_window_embed_model(root / "embed")}


def process(tmp_path, task, model, records, **options):
    """A worker for `task` with `options`, and a one-shard corpus of `records` through it."""
    tmp_path.mkdir(exist_ok=True)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = WorkerConfig(
        task=task,
        model=model,
        options=TaskOptions(**options),
        fields=Fields(),
        corpus=str(corpus),
        output=str(tmp_path / "out"),
        token_budget=4096,
        max_batch_size=16,
        threads=1,
    )
    worker = ShardWorker(config)
    return worker, *through(worker, corpus)


def through(worker, corpus):
    """A one-shard corpus through a worker: its stats and the part's rows."""
    _, files = scan(str(corpus))
    (shard,) = plan_shards(files, 1 << 20)
    stats = worker.process(shard).to_json()
    return stats, pq.read_table(f"{worker.config.output}/parts/{part_name(shard)}").to_pylist()


def manifest_of(worker):
    """The manifest of the worker's output, as the driver reconciles it from the parts."""
    _, files = scan(worker.config.corpus)
    spec = {"files": [[f.rel, f.size, f.version] for f in files], "model": worker.config.model}
    shards = plan_shards(files, 1 << 20)
    return build_manifest(
        Output(worker.config.output), shards, spec, started=time.time(), pool=PoolRun(), resumed=0
    ).to_json()


def test_ner_chunk_finds_entities_to_the_documents_end_each_once_as_the_pipeline_with_stride(tmp_path, models):
    _, stats, rows = process(
        tmp_path, "ner", models["ner"], [{"text": LONG}, {"text": SHORT}], long_documents="chunk", stride=STRIDE
    )
    reference = pipeline("token-classification", model=models["ner"], aggregation_strategy="simple", stride=STRIDE)
    assert len(rows) == 2 and [r["truncated"] for r in rows] == [False, False]
    for text, row in zip((LONG, SHORT), rows, strict=True):
        expected = reference(text)
        got = row["entities"]
        assert [(e["entity_group"], e["start"], e["end"]) for e in got] == [
            (e["entity_group"], e["start"], e["end"]) for e in expected
        ]
        assert [e["score"] for e in got] == pytest.approx([float(e["score"]) for e in expected], abs=1e-4)
        assert all(e["word"] == text[e["start"] : e["end"]] for e in got)
    entities = rows[0]["entities"]
    spans = [(e["start"], e["end"]) for e in entities]
    assert len(spans) == len(set(spans)) and all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    # From the start of the document to its end, and every tagged name of it.
    assert entities[0]["start"] < len(LONG) // 20 and entities[-1]["end"] > len(LONG) * 19 // 20
    names = sum(LONG.split().count(word) for word, label in NER_WORDS.items() if label.startswith("B-"))
    assert sum(e["word"] in ("alice smith", "bob", "paris", "london") for e in entities) == names
    assert stats["documents"] == 2 and stats["chunked"] == 1 and stats["chunks"] > len(LONG.split()) // WINDOW


def test_ner_truncate_keeps_the_first_window_only_and_says_so(tmp_path, models):
    _, stats, rows = process(tmp_path, "ner", models["ner"], [{"text": LONG}])
    assert rows[0]["truncated"] and stats["truncated"] == 1 and stats["chunks"] == 0
    assert max(e["end"] for e in rows[0]["entities"]) < len(LONG) // 10


def test_embed_chunk_rows_are_sentence_transformers_vectors_of_each_chunks_text(tmp_path, models):
    records = [{"text": LONG}, {"text": SHORT}, {"body": "no text field"}]
    worker, stats, rows = process(tmp_path, "embed", models["embed"], records, long_documents="chunk", stride=STRIDE)
    long_rows = [r for r in rows if r["source"] == rows[0]["source"]]
    assert [r["chunk"] for r in long_rows] == list(range(len(long_rows))) and len(long_rows) > 20
    assert rows[len(long_rows)]["chunk"] == 0 and rows[len(long_rows)]["char_end"] == len(SHORT)
    # The windows cover the document from its first character to its last, each overlapping the next.
    assert long_rows[0]["char_start"] == 0 and long_rows[-1]["char_end"] == len(LONG)
    assert all(b["char_start"] < a["char_end"] < b["char_end"] for a, b in itertools.pairwise(long_rows))
    assert all(r["n_tokens"] <= WINDOW and not r["truncated"] for r in rows[:-1])
    # An error is one row of its document, with no chunk.
    assert rows[-1]["error"] == "no text field 'text'" and rows[-1]["chunk"] is None
    assert stats["documents"] == 3 and stats["chunks"] == len(rows) - 1 and stats["chunked"] == 1
    manifest = manifest_of(worker)
    assert manifest["counts"]["documents"] == 3 and manifest["counts"]["duplicate_ids"] == 0
    assert manifest["chunks"] == {"total": len(rows) - 1, "documents_chunked": 1}
    assert manifest["parts"][0]["rows"] == len(rows)

    texts = [LONG if r["source"] == rows[0]["source"] else SHORT for r in rows[:-1]]
    chunk_texts = [text[r["char_start"] : r["char_end"]] for text, r in zip(texts, rows[:-1], strict=True)]
    expected = SentenceTransformer(models["embed"], device="cpu").encode(chunk_texts, normalize_embeddings=True)
    got = np.array([r["embedding"] for r in rows[:-1]], dtype=np.float32)
    assert np.sum(got * expected, axis=1).min() >= 0.9999

    _, _, pooled = process(
        tmp_path / "mean",
        "embed",
        models["embed"],
        records,
        long_documents="chunk",
        stride=STRIDE,
        document_pooling="mean",
    )
    assert len(pooled) == 3 and "chunk" not in pooled[0]
    mean = expected[: len(long_rows)].mean(axis=0)
    assert float(np.dot(pooled[0]["embedding"], mean / np.linalg.norm(mean))) >= 0.9999
    assert float(np.dot(pooled[1]["embedding"], expected[-1])) >= 0.9999
    assert pooled[0]["n_tokens"] == sum(r["n_tokens"] for r in long_rows)


def test_a_window_that_fails_makes_its_document_one_error_row(tmp_path, models, monkeypatch):
    worker, _, _ = process(tmp_path, "embed", models["embed"], [{"text": "warm up"}], long_documents="chunk")
    poison = worker.task.tokenizer.convert_tokens_to_ids("poison")
    real_infer = worker.task.infer_columns

    def infer(batch):
        if (batch.input_ids == poison).any():
            raise RuntimeError("boom")
        return real_infer(batch)

    monkeypatch.setattr(worker.task, "infer_columns", infer)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in [SHORT, LONG + " poison", SHORT]))
    stats, rows = through(worker, corpus)
    assert [(r["chunk"], r["error"]) for r in rows] == [
        (0, None),
        (None, "model failed: RuntimeError: boom"),
        (0, None),
    ]
    assert rows[1]["n_tokens"] > WINDOW and stats["error"] == 1 and stats["ok"] == 2

    corpus.write_text('{"body": "a shard of errors only"}\n')
    _, (row,) = through(worker, corpus)
    assert row["error"] == "no text field 'text'" and row["chunk"] is None and row["n_tokens"] is None


def test_a_stride_that_leaves_a_window_no_room_is_refused_in_one_line(models):
    with pytest.raises(ValueError, match=r"--stride 126 must be less than the 126 text tokens of a window"):
        TASKS["embed"](models["embed"], TaskOptions(long_documents="chunk", stride=WINDOW - 2))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--task", "classify", "--long-documents", "chunk"],
            "--long-documents chunk is for embed and ner, not --task 'classify'",
        ),
        (["--task", "generate", "--long-documents", "chunk"], "not --task 'generate'"),
        (["--long-documents", "chunk", "--max-length", "64", "--stride", "64"], "--stride must be >= 0 and less than"),
        (["--long-documents", "chunk", "--stride", "-1"], "got -1"),
        (["--document-pooling", "mean"], "--document-pooling mean is for --task embed --long-documents chunk"),
        (
            ["--task", "ner", "--long-documents", "chunk", "--document-pooling", "mean"],
            "--document-pooling mean is for",
        ),
    ],
)
def test_chunk_options_that_mean_nothing_are_refused_in_one_line(tmp_path, capsys, args, message):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(SystemExit) as refused:
        main(["--check", "--corpus", str(tmp_path), *args])
    assert refused.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def test_the_chunk_options_reach_the_workers_and_the_jobs_identity(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr("job.__main__.run", ran.append)
    args = ["--long-documents", "chunk", "--stride", "32", "--document-pooling", "mean"]
    main(["--corpus", str(tmp_path), "--output", str(tmp_path / "out"), *args])
    (config,) = ran
    options = config.worker.options
    assert (options.long_documents, options.stride, options.document_pooling) == ("chunk", 32, "mean")
    # A rerun into the same output with another value is another job: spec.json differs.
    assert spec_of(config, [])["options"]["stride"] == 32


def test_a_short_max_length_that_truncates_needs_no_stride_below_it(tmp_path, capsys):
    """The stride is the windows' overlap: --max-length 16 under truncate is no chunk option."""
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    assert main(["--check", "--corpus", str(tmp_path), "--max-length", "16"]) == 0
