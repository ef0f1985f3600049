"""Model FLOPs of a BERT-style encoder and the published peaks they are measured against.

MFU (model FLOPs utilisation) = useful FLOPs done / seconds / the card's peak. Useful means the
FLOPs of the real tokens: padding costs time but is not work, so a loop that pads to the longest
document in corpus order gets a lower MFU than one that sorts by length, for the same kernels.

Forward FLOPs of one sequence of n real tokens, L layers of width d and feed-forward width f:

    F(n) = 2 * W * n  +  4 * L * d * n**2,    W = L * (4 * d**2 + 2 * d * f)

- 2 * W * n: every token goes through each weight matrix once (one multiply and one add per
  weight): the Q, K, V and output projections (4 * d**2) and the two feed-forward matrices
  (2 * d * f) of every layer.
- 4 * L * d * n**2: attention, Q @ K^T (2 * n**2 * d) and softmax(.) @ V (2 * n**2 * d) in every
  layer, summed over heads; per token that is the 4 * L * seq * d of the usual rule.
- Not counted, as is customary (they are elementwise or lookups, a few percent at most):
  embeddings, biases, LayerNorm, softmax, GELU, and the pooler BertModel runs on one token per
  sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, in TFLOP/s: the datasheets
# print the with-sparsity figure, twice these. Matched in order against torch.cuda.get_device_name,
# upper-cased: every word of the pattern must appear ("NVIDIA H100 80GB HBM3" is the SXM part).
PEAKS_BF16_TFLOPS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("H100 PCIe", ("H100", "PCIE"), 756.0),
    ("H100 NVL", ("H100", "NVL"), 835.0),
    ("H100 SXM", ("H100",), 989.0),
    ("H200 NVL", ("H200", "NVL"), 835.0),
    ("H200", ("H200",), 989.0),
    ("A100", ("A100",), 312.0),
)


@dataclass(frozen=True)
class Peak:
    card: str
    tflops: float


def peak_for(device_name: str) -> Peak | None:
    """The published dense bf16 peak of a card by its CUDA name; None for a card not in the table."""
    name = device_name.upper()
    for card, words, tflops in PEAKS_BF16_TFLOPS:
        if all(word in name for word in words):
            return Peak(card=card, tflops=tflops)
    return None


@dataclass(frozen=True)
class EncoderShape:
    layers: int
    hidden: int
    intermediate: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EncoderShape:
        """From a transformers config.json (BERT's names for the three sizes)."""
        try:
            return cls(
                layers=int(config["num_hidden_layers"]),
                hidden=int(config["hidden_size"]),
                intermediate=int(config["intermediate_size"]),
            )
        except KeyError as exc:
            raise ValueError(f"not a BERT-style encoder config: no {exc.args[0]!r}") from None

    @property
    def matmul_weights(self) -> int:
        """W: the weights every token is multiplied by, all layers together."""
        return self.layers * (4 * self.hidden**2 + 2 * self.hidden * self.intermediate)

    def sequence_flops(self, tokens: int) -> int:
        """F(n): forward FLOPs of one sequence of `tokens` real tokens."""
        return 2 * self.matmul_weights * tokens + 4 * self.layers * self.hidden * tokens**2

    def flops(self, lengths: Iterable[int]) -> int:
        """Useful forward FLOPs of a corpus: F summed over its documents' real token counts."""
        return sum(self.sequence_flops(n) for n in lengths)


def mfu(*, flops: float, seconds: float, peak: Peak | None) -> float | None:
    """Fraction of the peak that `flops` in `seconds` reach; None without a known peak."""
    if peak is None or seconds <= 0:
        return None
    return flops / seconds / (peak.tflops * 1e12)
