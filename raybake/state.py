"""What raybake remembers between commands: the images it built and pushed, the cluster it started,
the Ray token of each RayJob it submitted.

One small JSON file, `.raybake/state.json` (gitignored) in the project root by default, so a later `invoke
submit` can name the image it expects, `invoke down` needs no flags, and `invoke logs` reaches a RayJob's
head without reading its Secret back (the tool needs no `get secrets`). It holds tokens: mode 0600.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from job.records import ImageEntry, StateFile
from raybake.config import Settings
from raybake.private import write_private
from raybake.versions import ROOT

Entry = TypeVar("Entry")


def path_of(settings: Settings) -> Path:
    return ROOT / settings.state_file


def images(settings: Settings) -> dict[str, ImageEntry]:
    """Each variant's last build: `ref`, `git_ref`, `content_hash`, and `pushed` once pushed."""
    return _read(settings).get("images", {})


def image(settings: Settings, variant: str) -> ImageEntry:
    """The last build of `variant`, or {} when there is none."""
    return images(settings).get(variant) or {}


def record_image(settings: Settings, variant: str, entry: ImageEntry) -> None:
    _update(settings, lambda state: _set(state.setdefault("images", {}), variant, entry))


def clusters(settings: Settings) -> list[dict[str, Any]]:
    """The `invoke up` clusters raybake started and has not removed."""
    return list(_read(settings).get("clusters", {}).values())


def record_cluster(settings: Settings, name: str, entry: dict[str, Any] | None) -> None:
    """Remember the cluster `name`; None forgets it."""
    _update(settings, lambda state: _set(state.setdefault("clusters", {}), name, entry))


def local_heads(settings: Settings) -> dict[str, dict[str, Any]]:
    """The embedded Ray heads raybake started, by dashboard port."""
    return _read(settings).get("local_ray", {})


def record_local_head(settings: Settings, port: str, entry: dict[str, Any] | None) -> None:
    """Remember the head on `port`; None forgets it."""
    _update(settings, lambda state: _set(state.setdefault("local_ray", {}), port, entry))


def job_token(settings: Settings, namespace: str, job: str) -> str | None:
    """The Ray token raybake made for RayJob `job` in `namespace`; None where another client made it."""
    return _read(settings).get("job_tokens", {}).get(f"{namespace}/{job}")


def record_job_token(settings: Settings, namespace: str, job: str, token: str | None) -> None:
    """Keep the token of a RayJob this client submits; None forgets it (the RayJob was deleted)."""
    _update(settings, lambda state: _set(state.setdefault("job_tokens", {}), f"{namespace}/{job}", token))


def _read(settings: Settings) -> StateFile:
    try:
        state: StateFile = json.loads(path_of(settings).read_text())
    except FileNotFoundError:
        return {}
    return state


def _set(entries: dict[str, Entry], key: str, value: Entry | None) -> None:
    """entries[key] = value; None deletes it."""
    if value is None:
        entries.pop(key, None)
    else:
        entries[key] = value


def _update(settings: Settings, change: Callable[[StateFile], None]) -> None:
    """The state file, changed by `change`, written atomically."""
    state = _read(settings)
    change(state)
    # The tokens are this user's alone.
    write_private(path_of(settings), json.dumps(state, indent=2, sort_keys=True))
