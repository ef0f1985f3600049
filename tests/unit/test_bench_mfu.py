import pytest

from benchmarks.mfu import EncoderShape, Peak, mfu, peak_for

BERT_BASE = EncoderShape(layers=12, hidden=768, intermediate=3072)


def test_bert_base_weights_are_the_85m_of_its_encoder_matrices():
    # 12 x (4 x 768^2 + 2 x 768 x 3072): the 110M of bert-base less embeddings, biases and norms.
    assert BERT_BASE.matmul_weights == 84_934_656


def test_sequence_flops_are_two_per_weight_per_token_plus_attention_quadratic_in_length():
    n = 128
    assert BERT_BASE.sequence_flops(n) == 2 * 84_934_656 * n + 4 * 12 * 768 * n * n
    # Per token, attention adds the usual 4 x layers x seq x hidden.
    per_token = BERT_BASE.sequence_flops(n) / n
    assert per_token - 2 * BERT_BASE.matmul_weights == 4 * 12 * n * 768
    # Doubling the length more than doubles the work: the attention term.
    assert BERT_BASE.sequence_flops(2 * n) > 2 * BERT_BASE.sequence_flops(n)


def test_corpus_flops_count_real_tokens_of_each_document_not_a_padded_batch():
    lengths = [3, 50, 500]
    assert BERT_BASE.flops(lengths) == sum(BERT_BASE.sequence_flops(n) for n in lengths)
    # Padding all three to 500 would count far more: MFU is about useful work only.
    assert BERT_BASE.flops(lengths) < 3 * BERT_BASE.sequence_flops(500) / 2
    assert BERT_BASE.flops([]) == 0


def test_shape_from_a_transformers_config_and_a_clear_error_for_another_kind():
    config = {"num_hidden_layers": 6, "hidden_size": 384, "intermediate_size": 1536, "vocab_size": 30522}
    assert EncoderShape.from_config(config) == EncoderShape(layers=6, hidden=384, intermediate=1536)
    with pytest.raises(ValueError, match="'intermediate_size'"):
        EncoderShape.from_config({"num_hidden_layers": 6, "hidden_size": 384})


@pytest.mark.parametrize(
    ("name", "card", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.0),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", "H100 NVL", 835.0),
        ("NVIDIA H200", "H200", 989.0),
        ("NVIDIA H200 NVL", "H200 NVL", 835.0),
        ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
        ("NVIDIA A100 80GB PCIe", "A100", 312.0),
    ],
)
def test_peak_by_cuda_device_name(name, card, tflops):
    assert peak_for(name) == Peak(card=card, tflops=tflops)


def test_an_unknown_card_has_no_peak_and_no_mfu():
    assert peak_for("NVIDIA GeForce RTX 4090") is None
    assert peak_for("x86_64") is None
    assert mfu(flops=1e15, seconds=1.0, peak=None) is None


def test_mfu_is_flops_per_second_over_the_peak():
    h100 = peak_for("NVIDIA H100 80GB HBM3")
    # 300 TFLOP in one second on a 989 TFLOP/s card.
    assert mfu(flops=300e12, seconds=1.0, peak=h100) == pytest.approx(300 / 989)
    assert mfu(flops=300e12, seconds=2.0, peak=h100) == pytest.approx(150 / 989)
    assert mfu(flops=1.0, seconds=0.0, peak=h100) is None
