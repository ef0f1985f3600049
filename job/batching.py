"""Length-sorted, token-budget batches.

Batching documents in corpus order pads every sequence to the longest one in its batch; on a
long-tailed corpus most of the compute is then spent on padding. Sorting by length first and
cutting batches by a budget of padded tokens keeps batches dense and their memory bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Batch:
    indices: tuple[int, ...]  # positions in the input, for putting results back in order
    width: int  # the longest sequence: every row is padded to it

    @property
    def padded_tokens(self) -> int:
        return self.width * len(self.indices)


def token_budget_batches(
    lengths: Sequence[int], *, token_budget: int, max_batch_size: int, extra: int = 0
) -> list[Batch]:
    """Batches whose padded size (rows x (longest + extra)) stays within token_budget.

    `extra` is added to every row's length: generation reserves room for the new tokens. A single
    sequence over the budget still gets a batch of its own, so no document is ever dropped.
    Batches come longest first, so a batch too big for the device fails at the start.
    """
    if token_budget < 1 or max_batch_size < 1:
        raise ValueError(f"token_budget and max_batch_size must be >= 1, got {token_budget!r}, {max_batch_size!r}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[Batch] = []
    current: list[int] = []
    width = 0
    for i in order:
        # Descending order: the first row of a batch is its widest.
        row_width = width if current else lengths[i] + extra
        if current and (row_width * (len(current) + 1) > token_budget or len(current) >= max_batch_size):
            batches.append(Batch(tuple(current), width))
            current = []
            row_width = lengths[i] + extra
        current.append(i)
        width = row_width
    if current:
        batches.append(Batch(tuple(current), width))
    return batches
