"""The backend interface: what every kind of cluster lets the client do with a job."""

from __future__ import annotations

from abc import ABC, abstractmethod

from raybake.result import JobResult
from raybake.spec import JobSpec


class Backend(ABC):
    # Whether this machine's object-store credentials are the job's: a RayJob's come from its Secret.
    credentials_here = True

    def image_identity(self) -> str:
        """What the job's code comes from, for its id (raybake/identity.py); default: not known."""
        return ""

    @abstractmethod
    def submit(self, spec: JobSpec) -> str:
        """Start the job under the id spec.name; return it. AlreadySubmitted if that id is taken."""

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

    def prepare(self, spec: JobSpec) -> JobSpec:
        """Adapt paths to where the job runs (absolute local paths, uploads); default: as is."""
        return spec

    def output_lost(self, spec: JobSpec) -> bool:
        """Whether a finished job's output is known to be gone; default: it cannot be seen from here."""
        return False

    @abstractmethod
    def describe(self, spec: JobSpec) -> str:
        """What `submit --dry-run` prints: the submission as this backend would send it, secrets redacted."""

    def close(self) -> None:
        """Release what the backend holds open (a port-forward); the default holds nothing."""
        return None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
