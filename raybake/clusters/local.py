"""The embedded local Ray: the address backend pointed at a head raybake starts itself.

The job code travels as a py_module (no image needed), and corpus and output stay on this
machine's disk, so paths are made absolute: the job runs in another working directory.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from raybake.clusters import embedded
from raybake.clusters.address import AddressBackend, read_token
from raybake.clusters.base import Placed
from raybake.clusters.transport import UPLOAD_EXCLUDES, on_cluster
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.spec import JobSpec, is_local_path

# Where Ray's own CLI keeps its token: the token of a Ray the user started on the local port.
RAY_TOKEN_FILE = Path("~/.ray/auth_token")


def local_paths(spec: JobSpec) -> dict[str, Path]:
    """The spec's corpus and output that are paths on this machine."""
    return {k: Path(v) for k in ("corpus", "output") if is_local_path(v := getattr(spec, k))}


def token(settings: Settings) -> str | None:
    """The token of the Ray on the local port: raybake's own for the head it started (whatever the
    environment holds), else the one the user gives, as for any address."""
    head = embedded.ours(settings)
    if head is not None:
        return head.token()
    return read_token(settings, RAY_TOKEN_FILE.expanduser())


class LocalBackend(AddressBackend):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, embedded.url(settings))
        self.token = token(settings)

    @property
    def client(self) -> Any:
        if self._client is None and not embedded.is_running(self.settings):
            raise RaybakeError("no local Ray is running; `invoke submit` starts one", ExitCode.REFUSED)
        return super().client

    # No image on the local Ray: job/ comes from this checkout.
    ships_job = True

    def entrypoint(self, spec: JobSpec) -> str:
        """The job runs on this client's interpreter, the one the head runs on, not on whichever
        `python` comes first on PATH (a venv's `invoke` run by its path has no venv on PATH)."""
        return spec.command(python=sys.executable)

    def prepare(self, spec: JobSpec) -> Placed:
        """The cluster is this machine: `cluster:` paths are plain paths here, and nothing travels
        but a user's own script, which runs from their working directory."""
        runs = dataclasses.replace(spec, corpus=on_cluster(spec.corpus), output=on_cluster(spec.output))
        # The Ray raybake starts (now, or in ready()) is raybake's alone, a user's own `ray start` is
        # not: its workers wait, model loaded, for the next job (job/run.py). Not part of what the
        # job is: the id and the resume check ignore it.
        raybakes = embedded.ours(self.settings) is not None or not embedded.is_running(self.settings)
        if not spec.entrypoint and self.settings.local_keep_warm_s > 0 and raybakes:
            keep = ("--keep-warm-seconds", str(self.settings.local_keep_warm_s))
            runs = dataclasses.replace(runs, job_args=(*runs.job_args, *keep))
        uploads = {"working_dir": str(Path.cwd()), "excludes": UPLOAD_EXCLUDES} if spec.entrypoint else {}
        return Placed(named=spec, runs=runs, uploads=uploads)

    def output_lost(self, spec: JobSpec) -> bool:
        # Only the built-in job writes a manifest; a user's own script writes what it likes.
        return (
            not spec.entrypoint and is_local_path(spec.output) and not (Path(spec.output) / "manifest.json").is_file()
        )

    def ready(self) -> None:
        embedded.ensure_running(self.settings)
        # A head started just now has a new token: read it now, not at construction.
        self.token = token(self.settings)
