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


def path_of(settings: Settings) -> Path:
    return ROOT / settings.state_file


def read(settings: Settings) -> dict[str, Any]:
    try:
        return json.loads(path_of(settings).read_text())
    except FileNotFoundError:
        return {}


def update(settings: Settings, section: str, key: str, value: Any) -> None:
    """Set state[section][key] = value (None deletes it), written atomically."""
    path = path_of(settings)
    state = read(settings)
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
