"""What raybake remembers between commands: the images it built and pushed, the cluster it started.

One small JSON file, `.raybake/state.json` (gitignored) in the project root by default, so a later `invoke
submit` can name the image it expects and `invoke down` needs no flags.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from raybake.config import Settings
from raybake.versions import ROOT

IMAGES = "images"
CLUSTERS = "clusters"
LOCAL_HEADS = "local_ray"


def path_of(settings: Settings) -> Path:
    return ROOT / settings.state_file


def images(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each variant's last build: `ref`, `git_ref`, `content_hash`, and `pushed` once pushed."""
    return _read(settings).get(IMAGES, {})


def image(settings: Settings, variant: str) -> dict[str, Any]:
    """The last build of `variant`, or {} when there is none."""
    return images(settings).get(variant) or {}


def record_image(settings: Settings, variant: str, entry: dict[str, Any]) -> None:
    _update(settings, IMAGES, variant, entry)


def clusters(settings: Settings) -> list[dict[str, Any]]:
    """The `invoke up` clusters raybake started and has not removed."""
    return list(_read(settings).get(CLUSTERS, {}).values())


def record_cluster(settings: Settings, name: str, entry: dict[str, Any] | None) -> None:
    """Remember the cluster `name`; None forgets it."""
    _update(settings, CLUSTERS, name, entry)


def local_heads(settings: Settings) -> dict[str, dict[str, Any]]:
    """The embedded Ray heads raybake started, by dashboard port."""
    return _read(settings).get(LOCAL_HEADS, {})


def record_local_head(settings: Settings, port: str, entry: dict[str, Any] | None) -> None:
    """Remember the head on `port`; None forgets it."""
    _update(settings, LOCAL_HEADS, port, entry)


def _read(settings: Settings) -> dict[str, Any]:
    try:
        return json.loads(path_of(settings).read_text())
    except FileNotFoundError:
        return {}


def _update(settings: Settings, section: str, key: str, value: Any) -> None:
    """Set state[section][key] = value (None deletes it), written atomically."""
    path = path_of(settings)
    state = _read(settings)
    entries = state.setdefault(section, {})
    if value is None:
        entries.pop(key, None)
    else:
        entries[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-")
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
