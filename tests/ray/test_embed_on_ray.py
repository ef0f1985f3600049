"""Embeddings through `invoke submit` on a real local Ray equal SentenceTransformer.encode's."""

import json
import re

import numpy as np
import pyarrow.parquet as pq
from models import ST_PROMPTS, make_st_model
from raycluster import invoke
from sentence_transformers import SentenceTransformer

TEXTS = {
    "short": "The cat sat on the mat.",
    "one-word": "x",
    "medium": "Ray spreads work over GPUs, and each worker loads its model once. " * 3,
    "long": "A much longer document, past the model's limit of tokens. " * 60,
}


def test_a_cls_dense_normalize_model_with_a_named_prompt_equals_encode(ray_head, tmp_path):
    model = make_st_model(
        tmp_path / "model", pooling="cls", dense=16, prompts=ST_PROMPTS, default_prompt_name="passage"
    )
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in TEXTS.items()))
    env = ray_head.invoke_env(tmp_path / "results")
    common = ("submit", "--corpus", str(corpus), "--model", model, "--id-field", "id")
    done = invoke(env, *common, "--job-args", "--prompt-name query")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "documents: 4 (4 ok, 0 error, 0 missing, 1 truncated)" in done.stdout
    job_id = re.search(r"submitted (\S+);", done.stdout).group(1)
    table = pq.read_table(tmp_path / "results" / job_id / "parts")
    assert table.schema.field("embedding").type.list_size == 16  # the Dense layer's width
    rows = {r["id"]: r["embedding"] for r in table.to_pylist()}
    got = np.array([rows[i] for i in TEXTS], dtype=np.float32)
    expected = SentenceTransformer(model, device="cpu").encode(list(TEXTS.values()), prompt_name="query")
    assert np.sum(got * expected, axis=1).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)

    refused = invoke(env, *common, "--job-args", "--prompt-name qurey")
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert (
        f"raybake: error: --prompt-name 'qurey': model {model!r} has no such prompt" in said
        and "its prompts are ['document', 'passage', 'query']" in said
    )
    assert "Traceback" not in said
