"""Object storage for the job: whose credentials, and an S3 endpoint, CA bundle and style.

Whose credentials, by backend (docs/inputs-outputs.md#credentials):
- the embedded local Ray: the client's own, those it listed the corpus with. The variables of
  the stores the job's URIs name (`credentials`) go to that job alone, in a file of mode 0600
  that its runtime env names (raybake/clusters/local.py, job/credentials.py); never to the head,
  whose environment every job inherits;
- a RayJob: its containers get them with `envFrom` from the Secrets named in `env_from_secret`;
- an existing cluster (`--address`, `--cluster`): the environment its nodes were started in;
  the client's never go there.
What raybake carries to every backend is not secret: where the store is and how to talk to it,
as the variables botocore and fsspec read themselves, so the job, a user's own script and every
Ray worker see the same store:

- AWS_ENDPOINT_URL_S3: botocore's endpoint for S3 only (STS and the rest keep theirs);
- AWS_CA_BUNDLE: the CA that signed the endpoint's certificate (in-cluster stores often have
  their own, e.g. OpenShift's service CA);
- FSSPEC_S3: fsspec's per-protocol defaults (JSON), here path-style addressing, which MinIO,
  NooBaa and Ceph want where no wildcard DNS serves `bucket.host`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError

# Where a RayJob's pods find a CA bundle taken from a ConfigMap or Secret.
CA_MOUNT = "/etc/raybake/s3-ca"
CA_VOLUME = "s3-ca"
CA_KINDS = {"configmap": "configMap", "secret": "secret"}
# A Kubernetes object name (DNS-1123 subdomain) and a ConfigMap/Secret key.
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
PATH_STYLE = {"config_kwargs": {"s3": {"addressing_style": "path"}}}
# The variables each store's client reads its credentials, profile and their files from, by URI scheme:
# botocore's AWS_* (keys, session token, profile, shared config and credentials files, endpoint),
# google-auth's key file, adlfs's AZURE_STORAGE_*.
STORE_VARIABLES = {
    ("s3", "s3a"): ("AWS_",),
    ("gs", "gcs"): ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"),
    ("az", "abfs", "abfss", "adl"): ("AZURE_STORAGE_",),
}


@dataclass(frozen=True)
class CaBundle:
    """`configmap:NAME/KEY` or `secret:NAME/KEY` (mounted into a RayJob's pods), else a file path
    that exists where the job runs."""

    source: str  # "configMap", "secret" or "path"
    name: str  # the object's name, or the path
    key: str = ""

    @classmethod
    def parse(cls, value: str) -> CaBundle:
        kind, sep, rest = value.partition(":")
        if sep and kind.lower() in CA_KINDS:
            name, _, key = rest.partition("/")
            if not (K8S_NAME.match(name) and KEY.match(key)):
                raise RaybakeError(
                    f"s3_ca_bundle {value!r} must read {kind.lower()}:NAME/KEY, e.g. configmap:s3-ca/ca-bundle.crt",
                    ExitCode.REFUSED,
                )
            return cls(CA_KINDS[kind.lower()], name, key)
        if not value.startswith("/"):
            raise RaybakeError(
                f"s3_ca_bundle {value!r} must be configmap:NAME/KEY, secret:NAME/KEY or an absolute path "
                "that exists where the job runs",
                ExitCode.REFUSED,
            )
        return cls("path", value)

    @property
    def path(self) -> str:
        """The file as the job opens it."""
        return self.name if self.source == "path" else f"{CA_MOUNT}/{self.key}"


def check_endpoint(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RaybakeError(
            f"s3_endpoint {url!r} must be an http(s) URL, e.g. https://s3.example.internal", ExitCode.REFUSED
        )
    if parts.username or parts.password:
        raise RaybakeError(
            "s3_endpoint must not carry credentials (it shows in manifests and logs): "
            "put them in a Secret (--env-from-secret NAME) or the environment",
            ExitCode.REFUSED,
        )
    return url.rstrip("/")


def secrets(settings: Settings) -> tuple[str, ...]:
    for name in settings.env_from_secret:
        if not K8S_NAME.match(name) or len(name) > 253:
            raise RaybakeError(f"--env-from-secret {name!r} is not a Kubernetes Secret name", ExitCode.REFUSED)
    return tuple(dict.fromkeys(settings.env_from_secret))


def ca_bundle(settings: Settings) -> CaBundle | None:
    return CaBundle.parse(settings.s3_ca_bundle) if settings.s3_ca_bundle else None


def job_env(settings: Settings) -> dict[str, str]:
    """The variables that point the job's S3 client at the store: no secrets, safe to print."""
    env: dict[str, str] = {}
    if settings.s3_endpoint:
        env["AWS_ENDPOINT_URL_S3"] = check_endpoint(settings.s3_endpoint)
    if (ca := ca_bundle(settings)) is not None:
        env["AWS_CA_BUNDLE"] = ca.path
    if settings.s3_path_style:
        env["FSSPEC_S3"] = json.dumps(PATH_STYLE, sort_keys=True)
    return env


def credentials(uris: list[str], environ: Mapping[str, str], *, settings: Settings) -> dict[str, str]:
    """The client's variables for the stores these URIs name, and only those: what the client
    lists them with, so what the job on the embedded local Ray reads them with. The store's
    location from the settings (job_env) stays the settings'."""
    prefixes = {
        prefix
        for uri in uris
        for schemes, names in STORE_VARIABLES.items()
        if urlsplit(uri).scheme in schemes
        for prefix in names
    }
    given = job_env(settings)
    return {
        name: value
        for name, value in environ.items()
        if value and name not in given and any(name == p or (p.endswith("_") and name.startswith(p)) for p in prefixes)
    }


def storage_options(url: str, settings: Settings) -> dict[str, Any]:
    """fsspec options for the client's own look at an s3:// URL, matching what the job is told.

    The client's process imported fsspec before it knew the settings, so they are passed
    explicitly rather than through FSSPEC_S3. A CA in a ConfigMap or Secret exists only in the
    pods: the client keeps its own trust (AWS_CA_BUNDLE, if it sets one).
    """
    if url.startswith(("http://", "https://")):
        # A presigned URL is already encoded: re-encoding turns %2F into / and breaks its signature.
        return {"encoded": True}
    if not url.startswith(("s3://", "s3a://")):
        return {}
    options: dict[str, Any] = {}
    if settings.s3_endpoint:
        options["endpoint_url"] = check_endpoint(settings.s3_endpoint)
    if (ca := ca_bundle(settings)) is not None and ca.source == "path":
        options["client_kwargs"] = {"verify": ca.path}
    if settings.s3_path_style:
        options.update(PATH_STYLE)
    return options


def pod_additions(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what every container of a RayJob gets, what every pod gets): envFrom, env, the CA mount."""
    container: dict[str, Any] = {}
    pod: dict[str, Any] = {}
    if names := secrets(settings):
        container["envFrom"] = [{"secretRef": {"name": name}} for name in names]
    if env := job_env(settings):
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    ca = ca_bundle(settings)
    if ca is not None and ca.source != "path":
        container["volumeMounts"] = [{"name": CA_VOLUME, "mountPath": CA_MOUNT, "readOnly": True}]
        ref = {"name": ca.name} if ca.source == "configMap" else {"secretName": ca.name}
        pod["volumes"] = [{"name": CA_VOLUME, ca.source: {**ref, "items": [{"key": ca.key, "path": ca.key}]}}]
    return container, pod
