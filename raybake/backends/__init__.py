"""Where a job runs. Each backend submits a JobSpec and can follow, list, stop and inspect jobs."""

from __future__ import annotations

from raybake.backends.base import Backend, JobResult, exit_code
from raybake.config import Settings
from raybake.errors import RaybakeError


def backend_for(settings: Settings) -> Backend:
    if settings.backend == "local":
        from raybake.backends.local import LocalBackend

        return LocalBackend(settings)
    if settings.backend == "address":
        from raybake.backends.address import AddressBackend

        if not settings.address:
            raise RaybakeError("the address backend needs --address URL (or raybake.address in invoke.yaml)", 2)
        from raybake import localcluster

        cluster = localcluster.at(settings, settings.address)
        if cluster is not None:
            from raybake.backends.containers import ContainerClusterBackend

            return ContainerClusterBackend(settings, cluster)
        return AddressBackend(settings, settings.address)
    raise RaybakeError(f"backend {settings.backend!r} is not available yet", 2)


__all__ = ["Backend", "JobResult", "backend_for", "exit_code"]
