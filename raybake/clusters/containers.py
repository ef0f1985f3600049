"""The address backend aimed at the `invoke up` cluster: raybake knows its image and its mount.

The cluster mounts one host directory at the same path in every container, so a local path
under it only has to be made absolute; a path outside it would not exist in the job.
"""

from __future__ import annotations

from raybake.clusters.address import AddressBackend
from raybake.clusters.base import Placed
from raybake.clusters.local import local_paths
from raybake.clusters.localcluster import Cluster
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError
from raybake.spec import JobSpec


class ContainerClusterBackend(AddressBackend):
    def __init__(self, settings: Settings, cluster: Cluster) -> None:
        # The cluster's own token, from the file `invoke up` made: never the user's RAY_AUTH_TOKEN.
        super().__init__(settings, cluster.url, token=cluster.token() or "")
        self.cluster = cluster
        self.expected_image = settings.expected_image or cluster.image

    def prepare(self, spec: JobSpec) -> Placed:
        for flag, path in local_paths(spec).items():
            if not path.is_relative_to(self.cluster.data_dir):
                raise RaybakeError(
                    f"--{flag} {str(path)!r} is outside {self.cluster.data_dir!r}, the directory the "
                    "cluster mounts: move it there, or `invoke down` and `invoke up --data DIR`",
                    ExitCode.REFUSED,
                )
        return Placed(named=spec, runs=spec)
