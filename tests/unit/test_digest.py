"""An identity's hash: the same value hashes alike whatever its keys' order, and as it always has."""

from __future__ import annotations

import hashlib
from pathlib import Path

from job.digest import canonical, digest


def test_key_order_does_not_count_and_what_json_lacks_is_its_str():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert canonical({"p": Path("/x")}) == b'{"p": "/x"}'


def test_the_hash_is_sha256_of_the_sorted_json_cut_to_length():
    # Job ids and identities already recorded were made this way: they must not change.
    assert digest({"b": 1, "a": "x"}, 8) == hashlib.sha256(b'{"a": "x", "b": 1}').hexdigest()[:8]
    assert len(digest([1])) == 16
