"""What raybake remembers between commands: the images it built and pushed, the cluster it started.

One small JSON file under `.raybake/` (gitignored) in the project root, so a later `invoke
submit` can name the image it expects and `invoke down` needs no flags.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from raybake.versions import ROOT

STATE_FILE = ROOT / ".raybake" / "state.json"


def read(path: Path = STATE_FILE) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def update(section: str, key: str, value: Any, *, path: Path = STATE_FILE) -> None:
    """Set state[section][key] = value (None deletes it), written atomically."""
    state = read(path)
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
