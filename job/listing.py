"""What a file listing (fsspec's `find(detail=True)`, `info`) says about a file: whether it is a
document, and which version of it the store holds.

Standard library only: the client reads the same listing for a job's identity
(raybake/identity.py), so the two sides must agree on both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Which listing field says a file's version, by filesystem: S3 and HTTP ETag, GCS etag, md5Hash
# or generation, Azure etag, HTTP Last-Modified, Azure and S3 last modified, local files mtime,
# GCS updated; the first present wins.
VERSION_FIELDS = (
    "ETag",
    "etag",
    "md5Hash",
    "generation",
    "Last-Modified",
    "LastModified",
    "last_modified",
    "mtime",
    "updated",
)


def is_document(rel: str) -> bool:
    """Hidden files and Spark/Hadoop markers (_SUCCESS, _committed_*) are not documents."""
    return not any(part.startswith((".", "_")) for part in rel.split("/"))


def version(info: Mapping[str, Any]) -> str | None:
    """The file's version as its listing gives it; None where the store gives none."""
    return next((str(info[k]) for k in VERSION_FIELDS if info.get(k) not in (None, "")), None)
