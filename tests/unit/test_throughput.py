import json

import numpy as np

from benchmarks.throughput import baseline, make_corpus, median_run, model_dir


def test_generated_corpora_are_seeded_and_shaped(tmp_path):
    uniform = make_corpus(tmp_path / "u", "uniform", 200)
    assert uniform == make_corpus(tmp_path / "u2", "uniform", 200)
    longtail = make_corpus(tmp_path / "l", "longtail", 200)
    words = sorted(len(t.split()) for t in longtail)
    assert words[-1] > 5 * words[len(words) // 2]  # a long tail, not a uniform spread
    assert all(12 <= len(t.split()) <= 24 for t in uniform)
    records = [json.loads(line) for line in (tmp_path / "u" / "uniform.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [str(i) for i in range(200)]


def test_median_run_is_one_real_run_with_all_rates_beside_it():
    runs = [{"docs_per_s": 5.0, "x": 1}, {"docs_per_s": 1.0, "x": 2}, {"docs_per_s": 3.0, "x": 3}]
    assert median_run(runs) == {"docs_per_s": 3.0, "x": 3, "docs_per_s_runs": [5.0, 1.0, 3.0]}


def test_the_baseline_loop_embeds_what_sentence_transformers_does_past_minilms_256_tokens():
    from sentence_transformers import SentenceTransformer

    texts = ["a short one", "cats sit on mats and spread work over GPUs " * 60]  # ~540 tokens
    _, got = baseline(texts, threads=1)
    expected = SentenceTransformer(model_dir(), device="cpu").encode(texts)
    assert np.sum(got * expected, axis=1).min() >= 0.9999
