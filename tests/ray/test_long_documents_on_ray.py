"""--long-documents chunk through `invoke submit` on a real local Ray: the Parquet output of embed
and ner against sentence-transformers and transformers' token-classification pipeline."""

import json
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from models import long_text, make_window_embed_model, make_window_ner_model
from raycluster import invoke
from sentence_transformers import SentenceTransformer
from transformers import pipeline

from raybake.versions import ROOT

STRIDE = 16


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A 3,000-token document among short ones, in two files (so two shards and two workers)."""
    root = tmp_path_factory.mktemp("long-corpus")
    texts = {"long": long_text(2900, seed=1), "a": "bob went to london", "b": "alice smith sat on the mat"}
    (root / "one.jsonl").write_text(json.dumps({"id": "long", "text": texts["long"]}) + "\n")
    (root / "two.jsonl").write_text("".join(json.dumps({"id": k, "text": texts[k]}) + "\n" for k in ("a", "b")))
    return root, texts


def submit(ray_head, tmp_path, corpus, task, model, job_args):
    env = ray_head.invoke_env(tmp_path / "results")
    done = invoke(
        env, "submit", "--corpus", str(corpus), "--task", task, "--model", model, "--id-field", "id",
        "--job-args", job_args,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / re.search(r"submitted (\S+);", done.stdout).group(1)
    return done.stdout, json.loads((out / "manifest.json").read_text()), pq.read_table(out / "parts").to_pylist()


def test_embed_and_ner_chunk_long_documents_through_invoke_submit(ray_head, tmp_path, corpus):
    root, texts = corpus
    embed_model, ner_model = make_window_embed_model(tmp_path / "embed"), make_window_ner_model(tmp_path / "ner")

    shown, manifest, rows = submit(
        ray_head, tmp_path / "embed-run", root, "embed", embed_model, f"--long-documents chunk --stride {STRIDE}"
    )
    windows = manifest["chunks"]["total"]
    assert len(rows) == windows > 20 and manifest["chunks"]["documents_chunked"] == 1
    assert manifest["counts"]["documents"] == 3 and manifest["counts"]["duplicate_ids"] == 0
    assert f"documents: 3 (3 ok, 0 error, 0 missing, 0 truncated, {windows} chunks (1 in more than one))" in shown
    rows.sort(key=lambda r: (r["id"], r["chunk"]))
    assert [r["chunk"] for r in rows if r["id"] == "long"] == list(range(windows - 2))
    chunk_texts = [texts[r["id"]][r["char_start"] : r["char_end"]] for r in rows]
    expected = SentenceTransformer(embed_model, device="cpu").encode(chunk_texts, normalize_embeddings=True)
    got = np.array([r["embedding"] for r in rows], dtype=np.float32)
    assert np.sum(got * expected, axis=1).min() >= 0.9999

    _, manifest, rows = submit(
        ray_head, tmp_path / "ner-run", root, "ner", ner_model, f"--long-documents chunk --stride {STRIDE}"
    )
    assert len(rows) == manifest["counts"]["documents"] == 3 and manifest["chunks"]["total"] == windows
    reference = pipeline("token-classification", model=ner_model, aggregation_strategy="simple", stride=STRIDE)
    for row in rows:
        expected = [(e["entity_group"], e["start"], e["end"]) for e in reference(texts[row["id"]])]
        assert [(e["entity_group"], e["start"], e["end"]) for e in row["entities"]] == expected
    long_entities = next(r["entities"] for r in rows if r["id"] == "long")
    assert long_entities[-1]["end"] > len(texts["long"]) * 19 // 20


def test_a_stride_the_models_window_cannot_take_stops_the_job_in_one_line(ray_head, tmp_path, corpus):
    model = make_window_embed_model(tmp_path / "embed")
    done = subprocess.run(
        [sys.executable, "-m", "job", "--corpus", str(corpus[0]), "--output", str(tmp_path / "out"),
         "--model", model, "--long-documents", "chunk", "--stride", "200"],
        cwd=ROOT, env=ray_head.job_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        "raybake: error: the workers could not load the model: ValueError: --stride 200 must be less than the "
        "126 text tokens of a window of" in done.stdout
    )
