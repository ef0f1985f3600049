"""What a listing says about a file, read alike by the client (identity) and the job (corpus)."""

from __future__ import annotations

from job import listing


def test_the_version_is_the_first_field_the_store_fills():
    assert listing.version({"ETag": '"abc"', "mtime": 1.5}) == '"abc"'
    assert listing.version({"ETag": "", "etag": None, "generation": 7}) == "7"
    assert listing.version({"size": 3}) is None


def test_hidden_files_and_markers_are_not_documents():
    assert listing.is_document("a/b.jsonl")
    assert not any(map(listing.is_document, (".hidden", "d/_SUCCESS", "_committed_1/x.jsonl", "d/.cache/x")))
