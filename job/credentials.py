"""Object-store credentials the client handed to this job alone, on raybake's embedded local Ray.

The head there outlives the shell that started it and every job inherits its environment, so
it holds no credentials (raybake/clusters/embedded.py). A client whose corpus or output is in
a store writes the variables it listed them with (AWS_*, GOOGLE_APPLICATION_CREDENTIALS,
AZURE_STORAGE_*) to a file of mode 0600 and names it in this job's runtime env; the driver
and each worker put them into their own environment before they open the store, and the
driver deletes the file when the job ends. The variables stay botocore's own: a profile or a
credentials file keeps refreshing expiring credentials as it does for the client.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from job.config import CREDENTIALS_VARIABLE


def load() -> None:
    """This job's credentials into this process's environment, where the client named a file."""
    path = os.environ.get(CREDENTIALS_VARIABLE)
    if not path:
        return
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        # The job has ended (a warm worker outlives it): what it loaded at its start stays.
        return
    os.environ.update({str(k): str(v) for k, v in values.items()})


def discard() -> None:
    """The file gone once the job ends: nothing outlives the job that holds its credentials."""
    if path := os.environ.get(CREDENTIALS_VARIABLE):
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()
