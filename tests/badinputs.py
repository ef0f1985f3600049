"""Files a user will really have in a corpus, and what raybake must make of each.

Shared by the unit tier (the worker in-process) and the ray tier (the real job on Ray): every
file ends as rows, each a result or an error with its reason, and the manifest reconciles.
"""

from __future__ import annotations

import collections
import gzip
import json
import re
import zlib
from pathlib import Path

TEN_MB = 10 * 1024 * 1024


def _jsonl(*texts: str) -> bytes:
    return "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts).encode()


def _readable_lines(cut: bytes) -> int:
    """Complete lines a gzip stream cut short still holds, read without raybake's code."""
    return zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")


def make_bad_corpus(root: Path) -> dict[str, collections.Counter]:
    """Write the matrix under root; return per file the expected rows: Counter of error kind (None: ok)."""
    root.mkdir(parents=True, exist_ok=True)
    whole = gzip.compress(_jsonl(*(f"line {i} of a long export, " * 8 for i in range(200))), mtime=0)
    cut = whole[: len(whole) // 2]
    files: dict[str, tuple[bytes, dict[str | None, int]]] = {
        # Windows-1252/latin-1 is refused per document, not guessed: a wrong guess gives results
        # for text nobody wrote.
        "latin1.txt": ("café crème".encode("latin-1"), {"not valid UTF-8": 1}),
        "latin1.jsonl": (_jsonl("fine") + '{"text": "naïve"}\n'.encode("latin-1"), {None: 1, "not valid UTF-8": 1}),
        # UTF-16 with a BOM ("Unicode" in Windows tools) says what it is: decoded.
        "utf16.txt": ("naïve ✓ unicode".encode("utf-16"), {None: 1}),
        "utf16.jsonl": (_jsonl("one ✓", "two ✓").decode().encode("utf-16"), {None: 2}),
        "utf16.csv": ("text,n\r\nhéllo,1\r\nwörld,2\r\n".encode("utf-16"), {None: 2}),
        "utf8-bom.txt": ("\ufeffwith a BOM".encode(), {None: 1}),
        "utf8-bom.jsonl": ("\ufeff".encode() + _jsonl("first", "second"), {None: 2}),
        "crlf.jsonl": (_jsonl("a", "b").replace(b"\n", b"\r\n"), {None: 2}),
        "crlf.csv": (b"text,n\r\nfirst,1\r\nsecond,2\r\n", {None: 2}),
        "crlf.txt": (b"line one\r\nline two\r\n", {None: 1}),
        "image.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", {"binary content (NUL bytes), not text": 1}),
        "random.txt": (bytes(range(128, 256)), {"not valid UTF-8": 1}),
        "empty.txt": (b"", {"empty document": 1}),
        "whitespace.txt": (b"  \n\t \r\n", {"empty document": 1}),
        "blank-records.jsonl": (_jsonl("", "   ", "kept") + b"\n   \n", {"empty document": 2, None: 1}),
        "big.txt": (b"word " * (TEN_MB // 5), {None: 1}),
        "broken-line.jsonl": (
            _jsonl("before") + b'{"text": "cut mid-wr\n' + _jsonl("after"),
            {None: 2, "malformed JSON": 1},
        ),
        "not-an-object.jsonl": (b'["a list"]\n{"text": "ok"}\n', {"record is list, not an object": 1, None: 1}),
        "cut.jsonl.gz": (cut, {None: _readable_lines(cut), "file unreadable": 1}),
        "cut.txt.gz": (gzip.compress(b"a text cut short " * 500)[:40], {"file unreadable": 1}),
        "not-gzip.jsonl.gz": (_jsonl("plain text with a .gz name"), {"file unreadable": 1}),
    }
    for name, (body, _) in files.items():
        (root / name).write_bytes(body)
    return {name: collections.Counter(expected) for name, (_, expected) in files.items()}


def rows_by_file(rows: list[dict]) -> dict[str, collections.Counter]:
    """Observed rows per file: Counter of error kind (None: ok), as make_bad_corpus states them."""
    seen: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in rows:
        kind = row["error"].split(":", 1)[0] if row["error"] else None
        # source is rel@offset, rel:line/row or rel (job/corpus.py)
        seen[re.split(r"[:@]", row["source"], maxsplit=1)[0]][kind] += 1
    return dict(seen)
