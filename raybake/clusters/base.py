"""The backend interface: what every kind of cluster lets the client do with a job."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Self

from raybake.config import Settings
from raybake.result import JobResult
from raybake.spec import JobSpec


@dataclass(frozen=True)
class Placed:
    """A job as the user named it and as the cluster runs it, and the files that travel with it.

    `named` keeps the paths as given on this machine (the summary, the RayJob's annotations say
    those); `runs` has them as the job sees them (an upload's root, a `cluster:` path's mount).
    """

    named: JobSpec
    runs: JobSpec
    # runtime_env entries that carry local files to the cluster (working_dir, excludes).
    uploads: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.runs.name

    def renamed(self, name: str) -> Placed:
        """The same job under another id: a later attempt writes to the same output."""
        return dataclasses.replace(
            self, named=dataclasses.replace(self.named, name=name), runs=dataclasses.replace(self.runs, name=name)
        )


class Backend(ABC):
    # What the backend was made from (raybake.clusters.backend_for): every backend keeps it.
    settings: Settings

    @property
    def credentials_here(self) -> bool:
        """Whether this machine's object-store credentials are the job's: on raybake's embedded
        Ray only; a RayJob's come from its Secret, an existing cluster's from its nodes."""
        return False

    def image_identity(self) -> str:
        """What the job's code comes from, for its id (raybake/identity.py); default: not known."""
        return ""

    @abstractmethod
    def submit(self, placed: Placed) -> str:
        """Start the job under the id placed.name; return it. AlreadySubmitted if that id is taken."""

    @abstractmethod
    def follow(self, job_id: str) -> JobResult:
        """Stream logs with progress until the job ends; return its final status."""

    @abstractmethod
    def status(self, job_id: str) -> JobResult: ...

    @abstractmethod
    def logs(self, job_id: str) -> str: ...

    @abstractmethod
    def stop(self, job_id: str, *, delete: bool = False) -> bool:
        """Stop the job; `delete` also removes what the cluster keeps of it."""

    @abstractmethod
    def jobs(self) -> list[dict]:
        """id, status, start, entrypoint; and lineage and identity where raybake submitted it."""

    def ready(self) -> None:
        """Make the cluster ready to take a job, after the input passed its checks; default: it is."""
        return None

    def prepare(self, spec: JobSpec) -> Placed:
        """The job's paths where it runs: uploads, `cluster:` mounts; default: as named."""
        return Placed(named=spec, runs=spec)

    def output_lost(self, spec: JobSpec) -> bool:
        """Whether a finished job's output is known to be gone; default: it cannot be seen from here."""
        return False

    @abstractmethod
    def describe(self, placed: Placed) -> str:
        """What `submit --dry-run` prints: the submission as this backend would send it, secrets redacted."""

    def close(self) -> None:
        """Release what the backend holds open (a port-forward); the default holds nothing."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
