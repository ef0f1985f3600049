"""Why a job stopped early, as one line and an exit code: from the libraries' own exceptions.

The exceptions are the real ones (botocore's, s3fs's translations, torch's, transformers'), raised
by the libraries where that is cheap; the ray tier's tests/ray/test_embedded_credentials.py runs
the same against a real S3 API. The client reads the line from Ray's message (raybake/result.py).
"""

from __future__ import annotations

import pytest
import torch
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from job import failure
from raybake.errors import ExitCode
from raybake.result import JobResult, exit_code


def raised(exc: BaseException, *, wrapped_in: type[BaseException] | None = None) -> BaseException:
    """The exception as a caller catches it: raised, maybe re-raised from another."""
    try:
        try:
            raise exc
        except BaseException as inner:
            if wrapped_in is None:
                raise
            raise wrapped_in("while reading the corpus") from inner
    except BaseException as caught:  # noqa: BLE001 - the test hands it on
        return caught


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Get"
    )


@pytest.mark.parametrize(
    ("exc", "code", "says"),
    [
        (NoCredentialsError(), 3, "no credentials for the object store"),
        (PermissionError("Access Denied"), 3, "refused the credentials (403"),
        (PermissionError("ExpiredToken: The provided token has expired."), 3, "expired credentials (ExpiredToken)"),
        (FileNotFoundError("The specified bucket does not exist"), 2, "no such bucket or key"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), 3, "cannot reach the object store"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), 1, "CUDA out of memory"),
        (OSError("/m is not a local folder and is not a valid model identifier"), 2, "the model cannot be loaded"),
        # A worker that died loading it: Ray's ActorDiedError carries the cause as coloured text.
        (
            RuntimeError(
                "The actor died ... \x1b[36mray::PoolWorker.__init__()\x1b[39m\nOSError: Repo id must be in the form"
            ),
            2,
            "the model cannot be loaded (OSError: Repo id must be in the form)",
        ),
    ],
)
def test_each_cause_is_one_line_with_its_remedy_and_code(exc, code, says):
    for caught in (raised(exc), raised(exc, wrapped_in=RuntimeError)):
        got, line = failure.explain(caught)
        assert got == code and says in line, line
        assert "\n" not in line and len(line) < 800


def test_the_remedies_name_where_credentials_come_from_on_each_backend():
    _, line = failure.explain(NoCredentialsError())
    assert "AWS_PROFILE" in line and "start an existing cluster's nodes with them" in line
    assert "--env-from-secret" in line
    _, expired = failure.explain(PermissionError("ExpiredToken"))
    assert "a profile or credentials file that renews them" in expired


def test_a_shards_failure_known_only_as_text_is_classified_alike():
    assert failure.explain_text("botocore.exceptions.NoCredentialsError: Unable to locate credentials")[0] == 3
    assert failure.explain_text(str(client_error("ExpiredToken", 400)))[0] == 3
    assert failure.explain_text("torch.OutOfMemoryError: CUDA out of memory.")[0] == 1
    assert failure.explain_text("ValueError: something else") == (1, "ValueError: something else")


def test_the_jobs_codes_are_the_clients():
    assert (failure.FAILED, failure.REFUSED, failure.UNREACHABLE) == (
        ExitCode.FAILED,
        ExitCode.REFUSED,
        ExitCode.UNREACHABLE,
    )


def test_the_client_shows_the_jobs_line_and_exits_with_its_code():
    tail = (
        "Traceback (most recent call last):\n  File ...\nNoCredentialsError\nraybake: error: no credentials x; do y\n"
    )
    message = (
        f"Job entrypoint command failed with exit code 3, last available logs (truncated to 20,000 chars):\n{tail}"
    )
    result = JobResult("j", "FAILED", message)
    assert result.reason == "no credentials x; do y" and exit_code(result) == ExitCode.UNREACHABLE
    # A user's own script: its codes mean its own things, and the log tail is no reason.
    own = JobResult("j", "FAILED", "Job entrypoint command failed with exit code 2, last available logs ...:\nboom")
    assert own.reason == "Job entrypoint command failed with exit code 2" and exit_code(own) == ExitCode.FAILED
    assert exit_code(JobResult("j", "STOPPED", message)) == ExitCode.FAILED
