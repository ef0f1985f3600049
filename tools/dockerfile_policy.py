"""The rules docker/Dockerfile keeps beyond hadolint's: every input pinned by content.

hadolint wants a tag on every FROM and a version on every pip install; a tag or a version can
name other bytes tomorrow, under the same content-hash tag (raybake/image/build.py). So:

- every FROM names a digest: `NAME@sha256:...`, or an ARG without a default, which `invoke build`
  fills with the base's digest (a plain `docker build` then fails instead of using a tag);
- every `pip install` installs a hash lock (`--require-hashes -r FILE`), except the one step that
  installs torch at its pin (`${TORCH_REQUIREMENT}`) from its own index: its wheel differs per
  variant and index, so no one hash can name it;
- no `--extra-index-url` (or PIP_EXTRA_INDEX_URL): two indexes compete for every name, and the
  highest version wins on either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from raybake.versions import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile"
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_ARG_REF = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")
# One pip install, up to the end of its shell command.
_PIP_INSTALL = re.compile(r"\b(?:python3?\s+-m\s+)?pip3?\s+install\b([^;&|]*)")
# The torch step's requirement: the pin from requirements.txt, passed by `invoke build`.
TORCH_REQUIREMENT = '"${TORCH_REQUIREMENT'


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"docker/Dockerfile: line {self.line}: {self.message}"


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(first line number, INSTRUCTION, arguments) with continuations joined and comments dropped."""
    found: list[tuple[int, str, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        pending.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            keyword, _, rest = " ".join(pending).partition(" ")
            found.append((start, keyword.upper(), rest.strip()))
            pending = []
    return found


def check_text(text: str) -> list[Problem]:
    problems = []
    defaults: dict[str, str | None] = {}
    stages: set[str] = set()
    for line, keyword, rest in instructions(text):
        if keyword == "ARG":
            name, sep, default = rest.partition("=")
            defaults[name.strip()] = default.strip().strip("\"'") if sep else None
        elif keyword == "FROM":
            words = rest.split()
            image = next((w for w in words if not w.startswith("--")), "")
            if len(words) >= 3 and words[-2].upper() == "AS":
                stages.add(words[-1].lower())
            used = _ARG_REF.match(image)
            if image.lower() in stages or _DIGEST.search(image):
                continue
            if used and used.group(1) in defaults and defaults[used.group(1)] is None:
                continue
            problems.append(
                Problem(
                    line,
                    f"FROM {image!r} is not pinned by digest: write NAME@sha256:DIGEST, or an ARG "
                    "without a default that `invoke build` fills with the base's digest",
                )
            )
        if "--extra-index-url" in rest or "PIP_EXTRA_INDEX_URL" in rest:
            problems.append(
                Problem(line, "a second index (--extra-index-url): give each package one, with --index-url")
            )
        if keyword == "RUN":
            for found in _PIP_INSTALL.finditer(rest):
                options = found.group(1)
                hashed = "--require-hashes" in options.split() and re.search(r"(?:^|\s)(?:-r|--requirement)\s", options)
                if not hashed and TORCH_REQUIREMENT not in options:
                    problems.append(
                        Problem(
                            line, f"unhashed {found.group(0).strip()!r}: install a hash lock with --require-hashes -r"
                        )
                    )
    return problems


def check(path: Path = DOCKERFILE) -> list[Problem]:
    return check_text(path.read_text())
