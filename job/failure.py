"""Why a job stopped early, as one line that names the cause and the remedy, and its exit code.

The driver prints the line last (`raybake: error: ...`) and exits with the code; the client
shows that line as the job's summary and exits with the same code (raybake/result.py). The
traceback goes to the log before it (`invoke logs`), not into the summary. The codes are the
client's (raybake/errors.py, docs/troubleshooting.md): 1 failed, 2 refused input, 3 unreachable
or refused credentials.

An exception is known by its type anywhere in its chain (a worker's error arrives wrapped in
Ray's RayTaskError, which is also an instance of the original class) or, for errors that only
cross a process as text (a shard's failure, an actor that died loading its model), by the words
its libraries write.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

FAILED, REFUSED, UNREACHABLE = 1, 2, 3

# Where a store's credentials come from on each kind of cluster: the remedy for missing or refused ones.
WHERE_CREDENTIALS = (
    "export the store's credentials where you submit (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*) for the embedded local Ray; "
    "start an existing cluster's nodes with them; on KubeRay pass --env-from-secret NAME"
)
# (exit code, what happened, what to do): by exception class name, anywhere in the chain.
BY_TYPE: dict[str, tuple[int, str, str]] = {
    "NoCredentialsError": (UNREACHABLE, "no credentials for the object store", WHERE_CREDENTIALS),
    "PartialCredentialsError": (UNREACHABLE, "incomplete credentials for the object store", WHERE_CREDENTIALS),
    "DefaultCredentialsError": (UNREACHABLE, "no credentials for the object store", WHERE_CREDENTIALS),
    "ClientAuthenticationError": (UNREACHABLE, "the object store refused the credentials", WHERE_CREDENTIALS),
    "PermissionError": (
        UNREACHABLE,
        "the object store refused the credentials (403: wrong, expired, or not for this bucket)",
        "use credentials that may read the corpus and write the output; " + WHERE_CREDENTIALS,
    ),
    "FileNotFoundError": (REFUSED, "no such bucket or key", "check the corpus and output URIs"),
    "EndpointConnectionError": (UNREACHABLE, "cannot reach the object store", "check the endpoint and the network"),
    "ClientConnectorError": (UNREACHABLE, "cannot reach the object store", "check the endpoint and the network"),
    "ConnectionError": (UNREACHABLE, "cannot reach the object store", "check the endpoint and the network"),
    "OutOfMemoryError": (
        FAILED,
        "CUDA out of memory",
        "lower --token-budget or --max-batch-size (or --max-length); the same submit resumes",
    ),
}
# The same causes as their libraries write them, for errors that arrive as text only.
BY_TEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Unable to locate credentials|NoCredentialsError"), "NoCredentialsError"),
    (
        re.compile(
            r"ExpiredToken|InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|InvalidToken|\b403\b|Forbidden"
        ),
        "PermissionError",
    ),
    (re.compile(r"NoSuchBucket|NoSuchKey|\b404\b"), "FileNotFoundError"),
    (re.compile(r"CUDA out of memory|OutOfMemoryError"), "OutOfMemoryError"),
    (re.compile(r"Could not connect to the endpoint|Cannot connect to host|Connection refused"), "ConnectionError"),
)
MODEL = re.compile(
    r"is not a local folder and is not a valid model identifier|Can't load|does not appear to have a file named"
    r"|Unrecognized model|not a valid JSON file|Error no file named|safetensors_rust\.SafetensorError"
    r"|Repo id must be|HFValidationError|RepositoryNotFoundError|RevisionNotFoundError|is not a valid git identifier"
)
# A traceback's last line: the exception's class and message.
RAISED = re.compile(r"^[\w.]*(Error|Exception)\b.*: ")
# Ray colours what it writes of a remote error; a line shown to the user has no escape codes.
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What ExpiredToken needs besides new credentials: a source that renews them.
EXPIRED = re.compile(r"ExpiredToken|RequestExpired|TokenRefreshRequired|expired", re.IGNORECASE)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__, getattr(current, "cause", None)) if e]
        todo += list(getattr(current, "exceptions", ()))


def _first_line(text: str) -> str:
    return next((line.strip() for line in ANSI.sub("", text).splitlines() if line.strip()), "")[:300]


def explain(exc: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an exception that ended the job."""
    chain = list(_chain(exc))
    text = "\n".join(f"{type(e).__name__}: {e}" for e in chain)
    if MODEL.search(text):
        return _model(text)
    for current in chain:
        for klass in type(current).__mro__:
            if klass.__name__ in BY_TYPE:
                return _line(klass.__name__, _first_line(str(current)) or type(current).__name__)
    return explain_text(text)


def explain_text(text: str) -> tuple[int, str]:
    """(exit code, one line) for a failure known only by its text (a shard's, a worker's)."""
    if MODEL.search(text):
        return _model(text)
    for pattern, name in BY_TEXT:
        if pattern.search(text):
            return _line(name, _first_line(text))
    return FAILED, _first_line(text) or "the job failed"


def _model(text: str) -> tuple[int, str]:
    # The exception's own line (`OSError: ...`), not a source line of a traceback that names it.
    lines = [line.strip() for line in ANSI.sub("", text).splitlines() if MODEL.search(line)]
    detail = next((line for line in lines if RAISED.match(line)), lines[0] if lines else "")[:300]
    return REFUSED, f"the model cannot be loaded ({detail}); check --model and --revision, and that it is reachable"


def _line(name: str, detail: str) -> tuple[int, str]:
    code, what, remedy = BY_TYPE[name]
    if name == "PermissionError" and EXPIRED.search(detail):
        what = "the object store refused expired credentials (ExpiredToken)"
        remedy = "for a long job use a profile or credentials file that renews them (AWS_PROFILE); " + WHERE_CREDENTIALS
    return code, f"{what}: {detail}; {remedy}"
