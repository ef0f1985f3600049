"""No tracked file names a package index's or a container registry's host.

The project's files say what to install and which image to base on; where from is the
machine's own configuration: pip's default index or its config, the host's apt sources, the
engine's registry settings, a workflow's `env.REGISTRY` or github context. A host written into
a file pins every user to it (a mirror cannot stand in), and is one more place to keep right.

The hosts are kept here as their labels, so that this file names none of them either.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from raybake.versions import ROOT

HOSTS = [
    # Python and other package indexes.
    ("pypi", "org"),
    ("pypi", "python", "org"),
    ("files", "pythonhosted", "org"),
    ("download", "pytorch", "org"),
    ("conda", "anaconda", "org"),
    ("repo", "anaconda", "com"),
    ("registry", "npmjs", "org"),
    ("proxy", "golang", "org"),
    # Distributions' package archives.
    ("deb", "debian", "org"),
    ("security", "debian", "org"),
    ("ftp", "debian", "org"),
    ("archive", "ubuntu", "com"),
    ("security", "ubuntu", "com"),
    # Container registries.
    ("ghcr", "io"),
    ("registry-1", "docker", "io"),
    ("index", "docker", "io"),
    ("registry", "hub", "docker", "com"),
    ("quay", "io"),
    ("gcr", "io"),
    ("registry", "k8s", "io"),
    ("nvcr", "io"),
    ("public", "ecr", "aws"),
    ("mcr", "microsoft", "com"),
    ("docker", "pkg", "github", "com"),
]
# Docker Hub's short name counts where it is a reference's registry (followed by `/library/x`),
# not where it names Debian's package of the engine (`apt-get install` it).
REFERENCE_ONLY = [("docker", "io")]


def pattern() -> re.Pattern[str]:
    hosts = "|".join(re.escape(".".join(labels)) for labels in HOSTS)
    references = "|".join(re.escape(".".join(labels)) + "/" for labels in REFERENCE_ONLY)
    # A host is a whole name: not the tail of a longer label (`mypypi.org`), but its subdomains count.
    return re.compile(rf"(?<![\w-])(?:{hosts})(?![\w-])|(?<![\w.-])(?:{references})", re.IGNORECASE)


def named(text: str) -> list[str]:
    return [m.group(0) for m in pattern().finditer(text)]


def tracked_files() -> list[str]:
    return (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    )


def test_no_tracked_file_names_a_registry_or_index_host():
    found = []
    for name in filter(None, tracked_files()):
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        for number, line in enumerate(data.decode(errors="replace").splitlines(), 1):
            found += [f"{name}:{number}: {host}" for host in named(line)]
    assert not found, found


@pytest.mark.parametrize("labels", HOSTS)
def test_each_host_is_found_in_a_url_a_reference_and_prose(labels):
    host = ".".join(labels)
    for text in (f"https://{host}/simple", f"{host}/org/image:tag", f"pull it from {host}.", f"x.{host}/y"):
        assert named(text) == [host], text


def test_what_only_looks_like_one_is_not_a_host():
    docker = ".".join(REFERENCE_ONLY[0])
    assert named(f"apt-get install -y {docker} docker-registry") == []
    assert named(f"FROM {docker}/library/python:3.11") == [f"{docker}/"]
    assert named("https://my" + ".".join(HOSTS[0]) + "/x") == []
    assert named("registry.example/library/raybake@sha256:0") == []
