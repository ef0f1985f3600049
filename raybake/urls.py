"""URLs that carry credentials: which parts are secret, how a URL shows.

A presigned URL (S3's X-Amz-Signature and X-Amz-Credential, GCS's X-Goog-Signature, Azure's SAS
`sig`) or one with `user:password@` or `TOKEN@` is a credential in itself. It reaches the job
intact, inside the base64 spec of its command line (raybake/spec.py), and shows everywhere else
with its secrets masked: logs, annotations, manifests, summaries. job/urls.py keeps the job's
copy of these rules, since job/ never imports raybake/.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote, urlsplit

MASK = "***"
# Query parameters whose value is a credential, by name: signatures, credentials, tokens, keys.
SECRET_PARAM = re.compile(r"sig|signature|credential|token|secret|passw|key|auth|sas", re.IGNORECASE)


def is_url(value: str) -> bool:
    return "://" in value


def _userinfo(url: str) -> str:
    netloc = urlsplit(url).netloc
    return netloc.rpartition("@")[0] if "@" in netloc else ""


def _secret_params(url: str) -> list[tuple[str, str]]:
    """(`name=value` as written, value as written) of each secret query parameter.

    Split at `&` only: a `;` inside a signature is part of its value, not a separator."""
    query = urlsplit(url).query
    found = []
    for pair in query.split("&") if query else []:
        name, sep, value = pair.partition("=")
        if sep and value and SECRET_PARAM.search(unquote(name)):
            found.append((pair, value))
    return found


def secrets_of(url: str) -> list[str]:
    """The secret strings in a URL, as written and decoded: what must never show anywhere."""
    if not is_url(url):
        return []
    raw = [_userinfo(url), *(value for _, value in _secret_params(url))]
    found = {form for r in raw if r for s in (r, unquote(r)) for form in _written(s)}
    # Longest first, so a secret that contains another is masked whole.
    return sorted(found, key=len, reverse=True)


def _written(secret: str) -> set[str]:
    """A secret as messages write it: as is, inside a repr (`\\'`), inside JSON (`\\"`)."""
    return {secret, repr(secret)[1:-1], repr(secret + "'")[1:-2], json.dumps(secret)[1:-1]} - {""}


def redact(url: str) -> str:
    """The URL as it may be shown: userinfo and secret query values masked, the rest unchanged."""
    if not is_url(url):
        return url
    shown = url
    if info := _userinfo(url):
        shown = shown.replace(f"{info}@", f"{MASK}@", 1)
    for pair, value in _secret_params(url):
        shown = shown.replace(pair, pair[: len(pair) - len(value)] + MASK, 1)
    return shown


def scrub(text: str, *urls: str) -> str:
    """Any text (an error, a log line) with the secrets of `urls` masked wherever they occur."""
    for secret in sorted({s for url in urls for s in secrets_of(url)}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
