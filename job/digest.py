"""One way to hash a value for an identity: its JSON with sorted keys, then SHA-256.

The job ids and a corpus's identity (the client), a run's identity and its warm workers' pool
(the job) are such hashes: equal values must hash alike on both sides and from one run to the
next. Standard library only, since the client imports it too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical(value: Any) -> bytes:
    """The value as JSON with sorted keys; what JSON has no type for (a path, a date) as its str."""
    return json.dumps(value, sort_keys=True, default=str).encode()


def digest(value: Any, length: int = 16) -> str:
    """The first `length` hex digits of the SHA-256 of `canonical(value)`."""
    return hashlib.sha256(canonical(value)).hexdigest()[:length]
