"""URL credentials (job/urls.py, which the client imports too): found, masked, and kept intact."""

from __future__ import annotations

import pytest

from job import urls

PRESIGNED = (
    "https://bucket.example/c.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAPLANTED%2F20261126&X-Amz-Signature=s1g%2F;a$b'c\"d&x-id=GetObject"
)
CASES = [
    (PRESIGNED, PRESIGNED.replace("AKIAPLANTED%2F20261126", "***").replace("s1g%2F;a$b'c\"d", "***")),
    (
        "https://acct.blob.example/c/d.csv?sv=2024&sp=r&sig=SASPLANTED%3D",
        "https://acct.blob.example/c/d.csv?sv=2024&sp=r&sig=***",
    ),
    ("https://TOKPLANTED@host/c.txt", "https://***@host/c.txt"),
    ("https://me:PWPLANTED@host/c.txt?token=TKPLANTED&page=2", "https://***@host/c.txt?token=***&page=2"),
    ("s3://bucket/corpus", "s3://bucket/corpus"),
    ("/data/it's?a=file.jsonl", "/data/it's?a=file.jsonl"),
]


@pytest.mark.parametrize(("url", "shown"), CASES)
def test_credentials_are_masked_and_the_rest_kept(url, shown):
    assert urls.redact(url) == shown


@pytest.mark.parametrize("url", [u for u, _ in CASES])
def test_a_message_quoting_the_url_any_way_shows_no_secret(url):
    urls.hide(url)
    for message in (url, repr(url), f"cannot open {url!r}: 403", f'{{"corpus": "{url}"}}'.replace('"d', '\\"d')):
        for shown in (urls.scrub(message, url), urls.shown(message)):
            assert not any(s in shown for s in ("PLANTED", "s1g")), shown


def test_the_file_name_comes_from_the_path_never_the_query():
    assert urls.file_name(PRESIGNED) == "c.jsonl"
    assert urls.file_name("http://h/dir/a%20b.jsonl.gz?sig=x") == "a b.jsonl.gz"
    assert urls.file_name("/local/it's?odd.jsonl") == "it's?odd.jsonl"


def test_http_urls_are_opened_as_encoded_so_a_signature_is_sent_unchanged():
    assert urls.fs_options(PRESIGNED) == {"encoded": True}
    assert urls.fs_options("s3://bucket/c.jsonl") == {} == urls.fs_options("/data/c.jsonl")
