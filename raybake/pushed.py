"""Which image a real-cluster job runs: --image / raybake.image, else the one `invoke push` recorded.

`invoke push` writes the pushed reference (repository@sha256:digest) to a gitignored state file;
a digest, never a moving tag, so the pods run exactly what was built and tested.
"""

from __future__ import annotations

from pathlib import Path

from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.versions import ROOT

STATE_FILE = ROOT / ".raybake" / "pushed-image"


def last_pushed(state_file: Path = STATE_FILE) -> str | None:
    if not state_file.is_file():
        return None
    return state_file.read_text().strip() or None


def image_for(settings: Settings, *, state_file: Path = STATE_FILE) -> str:
    image = settings.image or last_pushed(state_file)
    if not image:
        raise RaybakeError(
            "no image for the cluster's pods: run `invoke build` and `invoke push` first, "
            "or pass --image REPOSITORY@sha256:DIGEST (or set raybake.image)",
            2,
        )
    return image
