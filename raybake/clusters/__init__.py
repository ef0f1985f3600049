"""Where a job runs. Each backend submits a JobSpec and can follow, list, stop and inspect jobs."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from raybake.backends import BACKENDS
from raybake.clusters.base import Backend
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError


def backend_for(settings: Settings) -> Backend:
    """The backend the settings name, made by what raybake/backends.py says makes it."""
    module, _, attribute = BACKENDS[settings.backend].makes.partition(":")
    make: Callable[[Settings], Backend] = getattr(importlib.import_module(module), attribute)
    return make(settings)


def address_backend(settings: Settings) -> Backend:
    """A RayCluster by name (--cluster), the `invoke up` cluster by its URL, or any Ray by its URL."""
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


__all__ = ["Backend", "address_backend", "backend_for"]
