"""The backends, by their --backend name: the one registry that settings validation
(raybake/config.py), the tasks' help and dispatch (raybake/clusters: backend_for) read.

Each entry names what makes the backend as "module:attribute" rather than importing it, so a
command that never reaches a cluster imports neither Ray's, Kubernetes' nor Docker's client, and
this module stays a foundation under clusters/ (CONTRIBUTING.md, the layers). Adding a backend
is its module in raybake/clusters/, its test, and one line here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendEntry:
    what: str  # where its jobs run, in a few words (help texts)
    makes: str  # "module:attribute": a callable of the Settings that returns the Backend


BACKENDS: dict[str, BackendEntry] = {
    "local": BackendEntry("an embedded Ray on this machine", "raybake.clusters.local:LocalBackend"),
    "address": BackendEntry("a running Ray cluster (--address or --cluster)", "raybake.clusters:address_backend"),
    "rayjob": BackendEntry("a KubeRay RayJob per submit", "raybake.clusters.rayjob:RayJobBackend"),
}
