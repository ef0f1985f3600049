"""The embedded local Ray: the address backend pointed at a head raybake starts itself.

The job code travels as a py_module (no image needed), and corpus and output stay on this
machine's disk, so paths are made absolute: the job runs in another working directory.

On raybake's own head the job reads its object store with the client's credentials, which go
to it alone: a file of mode 0600 named in its runtime env, deleted when it ends. The job API
that lists runtime envs opens only to the head's token, and the file holds the variables the
client lists the store with, nothing else (docs/inputs-outputs.md#credentials). A Ray that
raybake did not start on the local port gets none of that, as any existing cluster.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from raybake import objectstore, state
from raybake.clusters import embedded
from raybake.clusters.address import AddressBackend, read_token_file
from raybake.clusters.base import Placed
from raybake.clusters.transport import UPLOAD_EXCLUDES, on_cluster
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.private import write_private
from raybake.result import AlreadySubmitted, JobResult
from raybake.spec import CREDENTIALS_VARIABLE, SPEC_VARIABLE, JobSpec, is_local_path

# Where Ray's own CLI keeps its token: the token of a Ray the user started on the local port.
RAY_TOKEN_FILE = Path("~/.ray/auth_token")


def local_paths(spec: JobSpec) -> dict[str, Path]:
    """The spec's corpus and output that are paths on this machine."""
    return {k: Path(v) for k in ("corpus", "output") if is_local_path(v := getattr(spec, k))}


def token(settings: Settings) -> str | None:
    """The token of the Ray on the local port: raybake's own for the head it started, else the
    file of a Ray the user started there (raybake.token_file, ~/.ray/auth_token). Never a token
    from the environment ($RAY_AUTH_TOKEN is a production cluster's, as a rule): whatever else
    listens on a local port would be handed it."""
    head = embedded.ours(settings)
    if head is not None:
        return head.token()
    return read_token_file(settings.token_file, RAY_TOKEN_FILE)


def credentials_file(settings: Settings, job_id: str) -> Path:
    """Where a job on raybake's head finds the client's credentials: beside the state file, in a
    folder of mode 0700 (the head's own temp dir may not exist yet when a dry run names it)."""
    return state.path_of(settings).with_name("jobs") / f"{job_id}.credentials.json"


def spec_file(settings: Settings, job_id: str) -> Path:
    """Where the job's driver reads its options, and deletes them: on this machine a file of mode
    0600, not a runtime-env variable, which Ray writes into its workers' command lines."""
    return state.path_of(settings).with_name("jobs") / f"{job_id}.spec"


class LocalBackend(AddressBackend):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, embedded.url(settings))
        self.token = token(settings)

    def raybakes(self) -> bool:
        """Whether the Ray on the local port is raybake's (running, or to be started by ready())."""
        return embedded.ours(self.settings) is not None or not embedded.is_running(self.settings)

    @property
    def credentials_here(self) -> bool:
        return self.raybakes()

    def credentials(self, placed: Placed) -> dict[str, str]:
        """The client's variables for the built-in job's object stores, where raybake's head runs it."""
        spec = placed.runs
        if spec.entrypoint or not self.credentials_here:
            return {}
        return objectstore.credentials([spec.corpus, spec.output], os.environ, settings=self.settings)

    def runtime_env(self, placed: Placed) -> dict[str, Any]:
        env = super().runtime_env(placed)
        env["env_vars"].pop(SPEC_VARIABLE, None)  # the spec file carries them (entrypoint)
        if self.credentials(placed):
            env["env_vars"][CREDENTIALS_VARIABLE] = str(credentials_file(self.settings, placed.name))
        return env

    def submit(self, placed: Placed) -> str:
        found = self.credentials(placed)
        paths = [credentials_file(self.settings, placed.name), spec_file(self.settings, placed.name)]
        if found:
            write_private(paths[0], json.dumps(found))
        if not placed.runs.entrypoint:
            write_private(paths[1], placed.runs.encoded())
        try:
            return super().submit(placed)
        except AlreadySubmitted:
            raise  # that job, submitted before under this id, reads the same files
        except BaseException:
            for path in paths:
                path.unlink(missing_ok=True)
            raise

    def follow(self, job_id: str) -> JobResult:
        result = super().follow(job_id)
        # The job deletes it as it ends; a job that was killed cannot.
        credentials_file(self.settings, job_id).unlink(missing_ok=True)
        return result

    @property
    def client(self) -> Any:
        if self._client is None and not embedded.is_running(self.settings):
            raise RaybakeError("no local Ray is running; `invoke submit` starts one", ExitCode.REFUSED)
        return super().client

    # No image on the local Ray: job/ comes from this checkout.
    ships_job = True

    def entrypoint(self, spec: JobSpec) -> str:
        """The job runs on this client's interpreter, the one the head runs on, not on whichever
        `python` comes first on PATH (a venv's `invoke` run by its path has no venv on PATH);
        its options from the spec file (submit writes it)."""
        if spec.entrypoint:
            return spec.entrypoint
        return shlex.join([*spec.job_argv(python=sys.executable)[:-1], str(spec_file(self.settings, spec.name))])

    def prepare(self, spec: JobSpec) -> Placed:
        """The cluster is this machine: `cluster:` paths are plain paths here, and nothing travels
        but a user's own script, which runs from their working directory."""
        runs = dataclasses.replace(spec, corpus=on_cluster(spec.corpus), output=on_cluster(spec.output))
        # The Ray raybake starts (now, or in ready()) is raybake's alone, a user's own `ray start` is
        # not: its workers wait, model loaded, for the next job (job/pool.py). Not part of what the
        # job is: the id and the resume check ignore it.
        if not spec.entrypoint and self.settings.local_keep_warm_s > 0 and self.raybakes():
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
