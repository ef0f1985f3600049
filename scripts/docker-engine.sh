#!/usr/bin/env bash
# A Docker engine and the CPU base image the docker tier builds on: install and start dockerd
# where none answers; take the real base, rayproject/ray:<ray>-py311-cpu, where it can be pulled
# (GitHub's runners), else make a stand-in with debootstrap (machines without a registry: CI
# here, the 2-core VM); stage the local torch wheel in the build's wheelhouse.
# Idempotent: `.ci/run` and the docker tests both call it; a second run costs about a second.
# Usage: scripts/docker-engine.sh [STAND_IN]   (a stand-in of that name, never the real base)
# The last line names the base: `base image NAME: SIZE bytes`.
set -euo pipefail
cd "$(dirname "$0")/.."
stand_in="${1:-raybake-base/debian:bookworm}"
ray_pin="$(sed -n 's/^ray\(\[[^]]*\]\)\{0,1\}==\([^ ;#]*\).*/\2/p' requirements.txt)"
real_base="rayproject/ray:${ray_pin}-py311-cpu"
# Root for packages, dockerd and the chroot: as is in CI, through sudo on a GitHub runner.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# docker-registry: a real registry (Debian's build of distribution) for the push tests.
missing=""
command -v dockerd >/dev/null || missing="docker.io"
command -v docker-registry >/dev/null || missing="$missing docker-registry"
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086 # two package names, split on purpose
    as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi
if ! docker info >/dev/null 2>&1; then
    # No systemd here: the daemon runs in its own session so it outlives this script.
    as_root sh -c 'setsid dockerd >/var/log/raybake-dockerd.log 2>&1 < /dev/null &'
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -n 20 /var/log/raybake-dockerd.log; echo "dockerd did not start" >&2; exit 1; }
fi

# The production image's base where a registry serves it, so that base is what gets tested.
base_image="$stand_in"
if [ $# = 0 ] && { docker image inspect "$real_base" >/dev/null 2>&1 || timeout 900 docker pull -q "$real_base" >/dev/null 2>&1; }; then
    base_image="$real_base"
fi

# The stand-in for rayproject/ray:<ray>-py311-cpu, shaped like it: a non-root user `ray`
# (uid 1000, gid 100) that owns the Python on PATH, so docker/Dockerfile serves both.
if ! docker image inspect "$base_image" >/dev/null 2>&1; then
    # Debian's archive keyring: on an Ubuntu runner debootstrap has only Ubuntu's.
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    # Debian's mirror as this host's apt sources name it (one-line or deb822), else debootstrap's
    # default, which is Debian's on Debian. An Ubuntu runner pulls the real base instead; where it
    # cannot, its debootstrap defaults to Ubuntu's archive: RAYBAKE_DEBIAN_MIRROR names Debian's.
    sources=()
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] && sources+=("$file")
    done
    mirror="${RAYBAKE_DEBIAN_MIRROR:-}"
    if [ -z "$mirror" ] && [ ${#sources[@]} -gt 0 ]; then
        mirror="$(awk '
            /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }
            /^deb[ \t]/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { if ($i ~ /\/debian\/?$/) { print $i; exit } break } }
        ' "${sources[@]}")"
    fi
    needed=""
    command -v debootstrap >/dev/null || needed="debootstrap"
    [ -f "$keyring" ] || needed="$needed debian-archive-keyring"
    if [ -n "$needed" ]; then
        # shellcheck disable=SC2086 # package names, split on purpose
        as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $needed
    fi
    rootfs="$(mktemp -d /tmp/raybake-rootfs.XXXXXX)"
    trap 'as_root rm -rf "$rootfs"' EXIT
    chmod 755 "$rootfs"  # it becomes the image's /, which every user must traverse
    as_root debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        --keyring="$keyring" bookworm "$rootfs" ${mirror:+"$mirror"} >/dev/null
    # Outbound TLS goes through an inspecting proxy here: the host's bundle carries its CA.
    as_root cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    as_root chroot "$rootfs" useradd --uid 1000 --gid 100 --create-home --shell /bin/bash ray
    as_root chroot "$rootfs" su ray -c "python3 -m venv /home/ray/venv"
    # As rayproject/ray: HOME set, and a home that a random UID in group 0 (OpenShift) can write.
    as_root chroot "$rootfs" sh -c "chgrp 0 /home/ray && chmod 0775 /home/ray"
    as_root sh -c "rm -rf '$rootfs'/var/cache/apt/archives/*.deb '$rootfs'/var/lib/apt/lists/*"
    as_root tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/home/ray/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV HOME=/home/ray' \
        --change 'USER ray' --change 'WORKDIR /home/ray' --change 'CMD ["bash"]' \
        - "$base_image" >/dev/null
    echo "made base image $base_image"
fi

# The CPU torch wheel lies on disk here; the image build installs it from the wheelhouse.
torch_pin="$(sed -n 's/^torch==\([^ ;#]*\).*/\1/p' requirements.txt)"
for wheel in "${PIP_FIND_LINKS:-/opt/wheels}"/torch-"$torch_pin"+cpu-*.whl; do
    [ -f "$wheel" ] && [ ! -f "docker/wheelhouse/$(basename "$wheel")" ] && cp "$wheel" docker/wheelhouse/
done
docker image inspect --format 'base image {{index .RepoTags 0}}: {{.Size}} bytes' "$base_image"
