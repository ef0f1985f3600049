"""The job image: a content-hash tag, build (skipped when nothing changed), push, pushed digest.

The tag is `<variant>-<hash>`, the hash taken over exactly the build context that .dockerignore
selects (Dockerfile, the hash locks, job/), the variant's wheels in the wheelhouse, the build
arguments that change the image (variant, base image, torch pin and index, baked model) and the
base image's digest: a base re-pushed under the same tag makes another image, so another tag.
The build itself starts FROM that digest, never from the tag, so the image is the one the hash
names. An image with that tag is what the tree builds: its presence means the build can be
skipped. A second tag adds the git sha.

No credential reaches a build argument or a label: the build arguments stay in the image's
history. The source label is the checkout's remote without its userinfo, and a torch index that
carries a credential is refused.

The Docker API reports a failed build or push inside a 200 response's JSON stream, so every
stream is read to its end and an `error` in it is a failure, never silence.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from job import urls
from job.digest import canonical
from raybake import console, state
from raybake.config import Settings, known_variant
from raybake.errors import ExitCode, RaybakeError
from raybake.image import wheelhouse
from raybake.versions import ROOT, git_sha, pins, ray_version

DOCKERFILE = "docker/Dockerfile"
HASH_LENGTH = 12
STEP = re.compile(r"^Step \d+/\d+ : .*")
DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
# Push statuses that are progress noise; the rest (Pushed, Layer already exists, ...) are shown.
PUSH_NOISE = ("Preparing", "Waiting", "Pushing")
PINNED = re.compile(r"@(sha256:[0-9a-f]{64})$")
# The CUDA of a base image as its tag names it (rayproject/ray:2.60.0-py311-cu128 -> cu128).
BASE_CUDA = re.compile(r"-(cu\d+)(?:-|$)")


@dataclass(frozen=True)
class BuildPlan:
    """Everything that decides the image and its name, computed before any build."""

    variant: str
    repository: str
    # The base as configured or given (the label names it), and as the build's FROM names it:
    # NAME@sha256:DIGEST, or the image id of a local base that was never pushed.
    base_image: str
    base_ref: str
    # The base's registry digest, or the local image id of a base that was never pushed.
    base_digest: str
    torch_index: str
    bake_model: bool
    # The wheelhouse's wheels this variant may install (raybake/wheelhouse.py).
    wheels: tuple[Path, ...]
    content_hash: str
    revision: str
    # The checkout's remote, credential-free (source_url).
    source: str

    @property
    def tag(self) -> str:
        return f"{self.variant}-{self.content_hash[:HASH_LENGTH]}"

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def git_ref(self) -> str | None:
        """The content tag plus the commit; None outside a git checkout."""
        return None if self.revision == "unknown" else f"{self.ref}-g{self.revision[:7]}"

    def buildargs(self) -> dict[str, str]:
        return {
            **hashed_args(self.variant, self.base_ref, self.torch_index, self.bake_model),
            "BASE_NAME": self.base_image,
            "BASE_DIGEST": self.base_digest,
            "IMAGE_REF": self.ref,
            "REVISION": self.revision,
            "SOURCE": self.source,
        }


def hashed_args(variant: str, base_ref: str, torch_index: str, bake_model: bool) -> dict[str, str]:
    """The build arguments that change what is in the image (the tag names it; the rest label it)."""
    return {
        "RAY_VERSION": ray_version(),
        "VARIANT": variant,
        "BASE_IMAGE": base_ref,
        "TORCH_REQUIREMENT": f"torch=={pins()['torch']}",
        "TORCH_INDEX_URL": torch_index,
        "BAKE_MODEL": "1" if bake_model else "0",
    }


def context_files(root: Path = ROOT) -> list[str]:
    """The files of the build context, chosen by .dockerignore exactly as the Docker SDK sends them."""
    from docker.utils.build import exclude_paths

    ignore = root / ".dockerignore"
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return sorted(p for p in exclude_paths(str(root), patterns, dockerfile=DOCKERFILE) if (root / p).is_file())


def content_hash(args: Mapping[str, str], *, root: Path = ROOT, wheels: Sequence[Path] = ()) -> str:
    digest = hashlib.sha256(canonical(dict(args)))
    named = [(name, root / name) for name in context_files(root)]
    for name, path in [*named, *((f"wheelhouse/{w.name}", w) for w in wheels)]:
        data = path.read_bytes()
        digest.update(f"\0{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def base_pin(base_image: str, *, out: TextIO = sys.stdout) -> tuple[str, str]:
    """The base image by content: (the reference the build's FROM uses, its digest).

    A base given as NAME@sha256:DIGEST is used as given. Else its registry digest (RepoDigests)
    where the engine has one, or the image id of a local base (scripts/docker-engine.sh's, never
    pushed, so it has no registry digest; the image id is its content's hash all the same). A
    base the engine lacks is pulled first: the hash must name what the build will use.
    """
    import docker
    from docker.utils import parse_repository_tag

    if pinned := PINNED.search(base_image):
        return base_image, pinned.group(1)
    api = docker_api()
    try:
        found = api.inspect_image(base_image)
    except docker.errors.ImageNotFound:
        console.say(f"pulling the base image {base_image}", out=out)
        try:
            api.pull(base_image)
            found = api.inspect_image(base_image)
        except docker.errors.APIError as exc:
            raise RaybakeError(
                f"the base image {base_image!r} is not on this engine and could not be pulled "
                f"({str(exc.explanation or exc).strip()}): pull it, or make a local one with "
                "scripts/docker-engine.sh and pass --base-image",
                ExitCode.REFUSED,
            ) from None
    repo, _ = parse_repository_tag(base_image)
    for pinned_ref in found.get("RepoDigests") or []:
        if pinned_ref.split("@", 1)[0] == repo:
            return pinned_ref, pinned_ref.split("@", 1)[1]
    return found["Id"], found["Id"]


def torch_index_for(template: str, base_image: str) -> str:
    """The torch index with `{cuda}` filled from the base's tag: one setting serves every CUDA base.

    e.g. torch_index_cuda = "<PyTorch's wheel index>/{cuda}" gives .../cu128 for a -cu128 base.
    An index that carries a credential is refused: a build argument stays in `docker history`.
    """
    if urls.secrets_of(template):
        raise RaybakeError(
            f"the torch index {urls.redact(template)!r} carries a credential, which would stay in the "
            "image's history (build arguments are kept there): use an index that needs none, or put "
            "the torch wheel in docker/wheelhouse/",
            ExitCode.REFUSED,
        )
    if "{cuda}" not in template:
        return template
    found = BASE_CUDA.search(base_image.rsplit("/", 1)[-1])
    if not found:
        raise RaybakeError(
            f"the torch index {template!r} takes the CUDA version from the base image's tag, "
            f"but {base_image!r} names none (like -cu128): give --torch-index in full",
            ExitCode.REFUSED,
        )
    return template.replace("{cuda}", found.group(1))


def repository(settings: Settings) -> str:
    """Where the image is named: under the registry when one is configured, so no retag is needed."""
    return f"{settings.registry.rstrip('/')}/{settings.image_name}" if settings.registry else settings.image_name


def plan(
    settings: Settings,
    *,
    variant: str,
    base_image: str | None = None,
    torch_index: str | None = None,
    bake_model: bool = False,
    out: TextIO = sys.stdout,
) -> BuildPlan:
    """What `build` would make of this tree; base image and torch index default per variant.

    Needs the Docker engine unless the base image is pinned by digest (its identity is hashed).
    """
    known_variant(variant)
    base = base_image or getattr(settings, f"base_image_{variant}").format(ray=ray_version())
    index = torch_index_for(getattr(settings, f"torch_index_{variant}") if torch_index is None else torch_index, base)
    base_ref, digest = base_pin(base, out=out)
    args = hashed_args(variant, base_ref, index, bake_model)
    wheels = tuple(wheelhouse.select(variant))
    return BuildPlan(
        variant=variant,
        repository=repository(settings),
        base_image=base,
        base_ref=base_ref,
        base_digest=digest,
        torch_index=index,
        bake_model=bake_model,
        wheels=wheels,
        content_hash=content_hash({**args, "BASE_DIGEST": digest}, wheels=wheels),
        revision=git_sha(),
        source=source_url(),
    )


def source_url() -> str:
    """The checkout's `origin`, for the image's source label, without userinfo, query or fragment.

    CI systems clone with `https://user:TOKEN@host/...`; that token must not be pushed inside
    the image. An scp-style remote (`user@host:path`) loses its user the same way.
    """
    found = subprocess.run(["git", "remote", "get-url", "origin"], cwd=ROOT, capture_output=True, text=True)
    remote = found.stdout.strip() if found.returncode == 0 else ""
    if urls.is_url(remote):
        parts = urlsplit(remote)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    return remote.rpartition("@")[2] if ":" in remote.rpartition("@")[2] else remote


def docker_client() -> Any:
    """A client of the local Docker engine (DOCKER_HOST and friends are honoured)."""
    import docker

    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise RaybakeError(
            f"no Docker engine answers ({exc}); start Docker, or run scripts/docker-engine.sh as root",
            ExitCode.UNREACHABLE,
        ) from None


def docker_api() -> Any:
    """The low-level API: build and push stream their JSON lines through it."""
    return docker_client().api


def image_exists(api: Any, ref: str) -> bool:
    import docker

    try:
        api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def read_build_stream(chunks: Iterable[Mapping[str, Any]], out: TextIO) -> str:
    """Print a build's output as it comes; return the image id; raise on an error in the stream."""
    step, image_id = "", ""
    for chunk in chunks:
        text = chunk.get("stream", "")
        if text:
            out.write(text)
            out.flush()
            for line in text.splitlines():
                if STEP.match(line):
                    step = line
        if "error" in chunk or "errorDetail" in chunk:
            message = chunk.get("error") or chunk["errorDetail"].get("message", "")
            where = f" at {step!r}" if step else ""
            raise RaybakeError(f"image build failed{where}: {message.strip()}", ExitCode.FAILED)
        image_id = chunk.get("aux", {}).get("ID", image_id)
    if not image_id:
        raise RaybakeError(
            "the image build ended without an image (the engine closed the stream early)", ExitCode.FAILED
        )
    return image_id


def pull_cache(api: Any, ref: str, out: TextIO) -> list[str]:
    """[ref] when the registry has the cache image; a missing cache only makes the build slower."""
    import docker

    repo, tag = ref.rsplit(":", 1)
    try:
        for chunk in api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise RaybakeError(chunk["error"], ExitCode.FAILED)
    except (docker.errors.APIError, RaybakeError) as exc:
        reason = str(getattr(exc, "explanation", None) or exc).strip().splitlines()[0]
        console.say(f"no build cache from {ref} ({reason}); building without it", out=out)
        return []
    return [ref]


def build(settings: Settings, build_plan: BuildPlan, *, cache_ref: str | None = None, out: TextIO = sys.stdout) -> bool:
    """Build the plan's image unless it exists; True when it was built, False when skipped.

    cache_ref: an image pushed by an earlier build (`push_cache`) whose layers this build may
    reuse; the classic builder matches them against each Dockerfile step.
    """
    api = docker_api()
    if image_exists(api, build_plan.ref):
        console.say(f"{build_plan.ref} is up to date (its inputs are unchanged): build skipped", out=out)
        built = False
    else:
        cache_from = pull_cache(api, cache_ref, out) if cache_ref else []
        console.say(f"building {build_plan.ref} from {build_plan.base_image}", out=out)
        try:
            with wheelhouse.serve(build_plan.wheels, port=settings.wheelhouse_port) as wheels_url:
                stream = api.build(
                    cache_from=cache_from,
                    path=str(ROOT),
                    dockerfile=DOCKERFILE,
                    tag=build_plan.ref,
                    buildargs={**build_plan.buildargs(), "WHEELHOUSE_URL": wheels_url},
                    # The build's pip reaches the package index as the host does (proxy, DNS), and
                    # the wheelhouse on the host's loopback.
                    network_mode="host",
                    rm=True,
                    forcerm=True,
                    decode=True,
                )
                read_build_stream(stream, out)
        except RaybakeError as exc:
            if " : FROM " in str(exc):
                raise RaybakeError(
                    f"{exc}; the base image {build_plan.base_image!r} could not be used: pull it, or "
                    "make a local one with scripts/docker-engine.sh and pass --base-image",
                    exc.code,
                ) from None
            raise
        built = True
    if build_plan.git_ref:
        repo, tag = build_plan.git_ref.rsplit(":", 1)
        api.tag(build_plan.ref, repo, tag)
    state.record_image(
        settings,
        build_plan.variant,
        {"ref": build_plan.ref, "git_ref": build_plan.git_ref, "content_hash": build_plan.content_hash},
    )
    also = f" (also {build_plan.git_ref})" if build_plan.git_ref else ""
    console.say(f"image {build_plan.ref}{also}", out=out)
    return built


def read_push_stream(chunks: Iterable[Mapping[str, Any]], out: TextIO) -> str:
    """Print a push's layer statuses; return the pushed digest; raise on an error in the stream."""
    digest = ""
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            message = chunk.get("error") or chunk["errorDetail"].get("message", "")
            raise RaybakeError(f"push failed: {message.strip()}", ExitCode.FAILED)
        digest = chunk.get("aux", {}).get("Digest", digest)
        status = chunk.get("status", "")
        if match := DIGEST.search(status):
            digest = match.group(1)
        if status and status not in PUSH_NOISE:
            console.line(f"{chunk['id']}: {status}" if chunk.get("id") else status, out=out)
    if not digest:
        raise RaybakeError(
            "push ended without a digest from the registry; nothing was confirmed pushed", ExitCode.FAILED
        )
    return digest


def auth_config(settings: Settings) -> dict[str, str] | None:
    """Credentials from the environment, else None: the engine then uses `docker login`'s store.

    GHCR: a user and a token with write:packages; Quay: a robot account; the OpenShift internal
    registry: any user name and `oc whoami -t` as the password.
    """
    import os

    user, password = os.environ.get(settings.registry_user_env), os.environ.get(settings.registry_password_env)
    if bool(user) != bool(password):
        missing = settings.registry_password_env if user else settings.registry_user_env
        raise RaybakeError(f"registry credentials are half set: {missing} is empty", ExitCode.REFUSED)
    return {"username": user, "password": password} if user and password else None


def push_tag(api: Any, repo: str, tag: str, credentials: dict[str, str] | None, out: TextIO) -> str:
    console.say(f"pushing {repo}:{tag}", out=out)
    return read_push_stream(api.push(repo, tag=tag, stream=True, decode=True, auth_config=credentials), out)


def push(settings: Settings, *, variant: str, tags: Sequence[str] = (), out: TextIO = sys.stdout) -> str:
    """Push the variant's last built image under its immutable tags, then any further tags.

    Further tags (`sha-<commit>`, a release, `latest`) only ever follow the content tags: no
    tag is pushed that the content-hash tag does not already pin. Returns `repository@digest`,
    recorded for later submissions.
    """
    if not settings.registry:
        raise RaybakeError(
            "no registry configured: set raybake.registry (e.g. REGISTRY/ORG) and rebuild", ExitCode.REFUSED
        )
    built = state.image(settings, variant)
    if not built:
        raise RaybakeError(
            f"no {variant} image built yet: run `invoke build --variant {variant}` first", ExitCode.REFUSED
        )
    repo = repository(settings)
    if not built["ref"].startswith(f"{repo}:"):
        raise RaybakeError(
            f"the {variant} image {built['ref']!r} is not named for the registry {settings.registry!r}: "
            "run `invoke build` again with it set (cached: only the name changes)",
            ExitCode.REFUSED,
        )
    api = docker_api()
    for tag in tags:
        api.tag(built["ref"], repo, tag)
    credentials = auth_config(settings)
    immutable = [ref.rsplit(":", 1)[1] for ref in (built["ref"], built.get("git_ref")) if ref]
    digest = ""
    for tag in [*immutable, *tags]:
        digest = push_tag(api, repo, tag, credentials, out)
    pushed = f"{repo}@{digest}"
    state.record_image(settings, variant, {**built, "pushed": pushed})
    console.say(f"pushed {pushed}", out=out)
    return pushed


def push_cache(settings: Settings, build_plan: BuildPlan, cache_ref: str, *, out: TextIO = sys.stdout) -> None:
    """The built image as the next build's cache: a single-stage build's image holds every layer."""
    api = docker_api()
    repo, tag = cache_ref.rsplit(":", 1)
    api.tag(build_plan.ref, repo, tag)
    push_tag(api, repo, tag, auth_config(settings), out)


def save(settings: Settings, *, variant: str, out: Path) -> Path:
    """The variant's last built image as a gzip archive: how a pull request's build hands it on.

    pr-image.yml builds without credentials and uploads this; pr-trial.yml loads and pushes it."""
    import gzip

    built = state.image(settings, variant)
    if not built:
        raise RaybakeError(
            f"no {variant} image built yet: run `invoke build --variant {variant}` first", ExitCode.REFUSED
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wb", compresslevel=1) as handle:
        for chunk in docker_api().get_image(built["ref"]):
            handle.write(chunk)
    return out


def load(settings: Settings, *, variant: str, archive: Path, out: TextIO = sys.stdout) -> str:
    """Load an image archive from an untrusted build and name it under this registry by its content.

    Nothing in the archive runs; of what it says only its image id is used: the name is
    `repository(settings):image-<id>`, so whatever tags a pull request put into it, it can only
    ever be pushed under the name this job chose (a `-pr` repository, see `invoke image-ref --pr`)."""
    api = docker_api()
    with archive.open("rb") as handle:
        said = [str(m.get("stream", "")) for m in api.load_image(handle) if isinstance(m, dict)]
    loaded = [line.split(": ", 1)[1].strip() for line in said if line.startswith("Loaded image")]
    if len(loaded) != 1:
        raise RaybakeError(f"expected one image in {str(archive)!r}, the engine loaded {len(loaded)}", ExitCode.REFUSED)
    image_id = api.inspect_image(loaded[0])["Id"]
    ref = f"{repository(settings)}:image-{image_id.removeprefix('sha256:')[:HASH_LENGTH]}"
    api.tag(image_id, *ref.rsplit(":", 1))
    state.record_image(settings, variant, {"ref": ref, "git_ref": None, "content_hash": image_id})
    console.say(f"loaded {image_id} as {ref}", out=out)
    return ref


def build_and_push(
    settings: Settings,
    *,
    base_image: str | None = None,
    torch_index: str | None = None,
    bake_model: bool = False,
    then_push: bool = False,
    cache_ref: str | None = None,
) -> None:
    """`invoke build`: build settings.variant's image unless it exists; `then_push`: push it and,
    given `cache_ref`, the next build's cache."""
    build_plan = plan(
        settings, variant=settings.variant, base_image=base_image, torch_index=torch_index, bake_model=bake_model
    )
    build(settings, build_plan, cache_ref=cache_ref)
    if then_push:
        push(settings, variant=settings.variant)
        if cache_ref:
            push_cache(settings, build_plan, cache_ref)
