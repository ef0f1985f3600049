import random

import pytest

from job.batching import token_budget_batches


def test_batches_respect_budget_and_cover_every_index_once():
    rng = random.Random(1)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    batches = token_budget_batches(lengths, token_budget=2048, max_batch_size=64)
    seen = sorted(i for b in batches for i in b.indices)
    assert seen == list(range(500))
    for b in batches:
        assert b.width == max(lengths[i] for i in b.indices)
        assert b.padded_tokens <= 2048 or len(b.indices) == 1
        assert len(b.indices) <= 64


def test_sorting_by_length_pads_far_less_than_corpus_order():
    rng = random.Random(2)
    lengths = [int(rng.lognormvariate(3.5, 1.0)) + 1 for _ in range(1000)]
    sorted_padded = sum(b.padded_tokens for b in token_budget_batches(lengths, token_budget=4096, max_batch_size=32))
    in_order = sum(max(lengths[i : i + 32]) * len(lengths[i : i + 32]) for i in range(0, 1000, 32))
    assert sorted_padded < 0.5 * in_order


def test_a_sequence_over_budget_gets_its_own_batch_and_extra_is_reserved():
    batches = token_budget_batches([5000, 3, 3], token_budget=100, max_batch_size=8, extra=10)
    assert batches[0].indices == (0,) and batches[0].width == 5010
    assert batches[1].indices == (1, 2) and batches[1].width == 13


def test_longest_batch_comes_first():
    batches = token_budget_batches([1, 50, 2, 40], token_budget=60, max_batch_size=8)
    assert batches[0].width == 50


def test_invalid_budget_is_refused():
    with pytest.raises(ValueError, match="token_budget"):
        token_budget_batches([1], token_budget=0, max_batch_size=1)


def test_auto_split_bytes_gives_many_shards_within_bounds():
    from job.corpus import SPLIT_BYTES_MAX, SPLIT_BYTES_MIN, CorpusFile, auto_split_bytes

    def corpus(*sizes):
        return [CorpusFile(path=f"f{i}", rel=f"f{i}", fmt="jsonl", gzip=False, size=n) for i, n in enumerate(sizes)]

    assert auto_split_bytes(corpus(4000)) == SPLIT_BYTES_MIN
    assert auto_split_bytes(corpus(64 << 20, 64 << 20)) == 2 << 20
    assert auto_split_bytes(corpus(10 << 40)) == SPLIT_BYTES_MAX


def test_cpu_token_budget_grows_for_narrow_models():
    from types import SimpleNamespace

    from job.config import TOKEN_BUDGET, token_budget

    assert token_budget("cpu", SimpleNamespace(hidden_size=384)) == TOKEN_BUDGET["cpu"]
    assert token_budget("cpu", SimpleNamespace(hidden_size=32)) > 8 * TOKEN_BUDGET["cpu"]
    assert token_budget("cuda", SimpleNamespace(hidden_size=32)) == TOKEN_BUDGET["cuda"]
