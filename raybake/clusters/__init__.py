"""Where a job runs. Each backend submits a JobSpec and can follow, list, stop and inspect jobs."""

from __future__ import annotations

from raybake.clusters.base import Backend
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError


def backend_for(settings: Settings) -> Backend:
    if settings.backend == "local":
        from raybake.clusters.local import LocalBackend

        return LocalBackend(settings)
    if settings.backend == "address":
        from raybake.clusters.address import AddressBackend

        if settings.cluster:
            from raybake.clusters import team
            from raybake.kube.client import Kube

            return team.backend(settings, Kube(settings), settings.cluster)
        if not settings.address:
            raise RaybakeError(
                "the address backend needs --address URL, or --cluster NAME (and --namespace) of a RayCluster",
                ExitCode.REFUSED,
            )
        from raybake.clusters import localcluster

        cluster = localcluster.at(settings, settings.address)
        if cluster is not None:
            from raybake.clusters.containers import ContainerClusterBackend

            return ContainerClusterBackend(settings, cluster)
        return AddressBackend(settings, settings.address)
    from raybake.clusters.rayjob import RayJobBackend

    return RayJobBackend(settings)


__all__ = ["Backend", "backend_for"]
