"""URLs that carry credentials: which parts are secret, how a URL shows, how the job opens one.

A presigned URL (S3's X-Amz-Signature and X-Amz-Credential, GCS's X-Goog-Signature, Azure's SAS
`sig`) or one with `user:password@` or `TOKEN@` is a credential in itself. It reaches the job
intact, inside the base64 spec of its command line (raybake/spec.py), and shows everywhere else
with its secrets masked: logs, annotations, manifests, summaries. A presigned URL is signed over
its exact bytes: fsspec's HTTP filesystem re-quotes a URL unless told it is already encoded
(`%2F` would become `/`, and the signature would no longer match).

Standard library only: the client imports this module too (CONTRIBUTING.md, the layers), so
both sides mask by the same rules.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
# Query parameters whose value is a credential, by name: signatures, credentials, tokens, keys.
SECRET_PARAM = re.compile(r"sig|signature|credential|token|secret|passw|key|auth|sas", re.IGNORECASE)


# Query parameters that sign a URL rather than say what it names: S3's X-Amz-* (the date and
# expiry too), GCS's X-Goog-*, S3 SigV2's Expires, Azure SAS's fields. A URL signed again is
# the same corpus.
SIGNING_PARAM = re.compile(
    rf"^(x-amz-|x-goog-)|^(expires|awsaccesskeyid|signature|sv|ss|srt|sp|se|st|spr|sr|sig|sk\w*)=|{SECRET_PARAM.pattern}",
    re.IGNORECASE,
)


def is_url(value: str) -> bool:
    return "://" in value


def fs_options(location: str) -> dict[str, Any]:
    """fsspec options that keep a URL byte for byte: presigned HTTP(S) URLs are already encoded."""
    return {"encoded": True} if urlsplit(location).scheme in ("http", "https") else {}


def file_name(location: str) -> str:
    """The last path segment, for a URL from its path: never from its query (`c.jsonl?X-Amz-...`)."""
    if is_url(location):
        return unquote(urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1])
    return location.rsplit("/", 1)[-1]


def _secret_params(url: str) -> list[tuple[str, str]]:
    # Split at `&` only: a `;` inside a signature is part of its value, not a separator.
    query = urlsplit(url).query
    pairs = [pair.partition("=") for pair in query.split("&")] if query else []
    return [(n + s + v, v) for n, s, v in pairs if s and v and SECRET_PARAM.search(unquote(n))]


def secrets_of(url: str) -> list[str]:
    """The secret strings in a URL, as written and decoded: what must never show anywhere.

    Longest first, so a secret that contains another is masked whole."""
    if not is_url(url):
        return []
    netloc = urlsplit(url).netloc
    raw = [netloc.rpartition("@")[0], *(value for _, value in _secret_params(url))]
    return sorted({form for r in raw if r for s in (r, unquote(r)) for form in _written(s)}, key=len, reverse=True)


def _written(secret: str) -> set[str]:
    """A secret as messages write it: as is, inside a repr (`\\'`), inside JSON (`\\"`)."""
    return {secret, repr(secret)[1:-1], repr(secret + "'")[1:-2], json.dumps(secret)[1:-1]} - {""}


def redact(url: str) -> str:
    """The URL as it may be shown: userinfo and secret query values masked, the rest unchanged."""
    if not is_url(url):
        return url
    shown = url
    netloc = urlsplit(url).netloc
    if "@" in netloc:
        shown = shown.replace(netloc.rpartition("@")[0] + "@", MASK + "@", 1)
    for pair, value in _secret_params(url):
        shown = shown.replace(pair, pair[: len(pair) - len(value)] + MASK, 1)
    return shown


def unsigned(url: str) -> str:
    """The URL without its signature: no userinfo, no signing or secret query parameters."""
    if not is_url(url):
        return url
    parts = urlsplit(url)
    pairs = parts.query.split("&") if parts.query else []
    names = [unquote(pair.partition("=")[0]) for pair in pairs]
    kept = [pair for pair, name in zip(pairs, names, strict=True) if not SIGNING_PARAM.search(name + "=")]
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="&".join(kept)).geturl()


# The secrets of the URLs this process was given: every line the job prints passes through
# `shown`, so an error message quoting a URL (fsspec's, aiohttp's) cannot print them either.
_HIDDEN: set[str] = set()


def hide(*locations: str) -> None:
    """Remember the secrets in these locations; `shown` masks them from now on."""
    for location in locations:
        _HIDDEN.update(secrets_of(location or ""))


def _masked(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def scrub(text: str, *urls: str) -> str:
    """Any text (an error, a log line) with the secrets of `urls` masked wherever they occur."""
    return _masked(text, {s for url in urls for s in secrets_of(url)})


def shown(text: str) -> str:
    """Text as it may be printed: every remembered secret masked, the longest first."""
    return _masked(text, _HIDDEN)
