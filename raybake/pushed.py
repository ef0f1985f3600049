"""Which image a real-cluster job runs: --image / raybake.image, else what `invoke build`/`push` recorded.

`invoke build` records each variant's local reference and `invoke push` its pushed
`repository@sha256:digest` in the gitignored state file `.raybake/state.json`:
`{"images": {"cpu": {"ref": ..., "pushed": ...}, "cuda": {...}}}`. Real clusters get the pushed
digest (a tag can move, a digest cannot); kind gets the local reference, loaded into its node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.versions import ROOT

STATE_FILE = ROOT / ".raybake" / "state.json"


def variant_for(settings: Settings) -> str:
    """GPU workers need the CUDA image; CPU-only pods run the smaller CPU one."""
    return "cuda" if settings.gpus else "cpu"


def recorded(variant: str, *, state_file: Path | None = None) -> dict[str, Any]:
    path = state_file or STATE_FILE
    try:
        return json.loads(path.read_text()).get("images", {}).get(variant) or {}
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, AttributeError):
        raise RaybakeError(f"the state file {str(path)!r} is damaged; delete it and build again", 2) from None


def last_pushed(settings: Settings, *, state_file: Path | None = None) -> str | None:
    return recorded(variant_for(settings), state_file=state_file).get("pushed")


def image_for(settings: Settings, *, state_file: Path | None = None) -> str:
    image = settings.image or last_pushed(settings, state_file=state_file)
    if not image:
        variant = variant_for(settings)
        raise RaybakeError(
            f"no image for the cluster's pods: run `invoke build --variant {variant}` and `invoke push "
            f"--variant {variant}` first, or pass --image REPOSITORY@sha256:DIGEST (or set raybake.image)",
            2,
        )
    return image


def local_image(variant: str = "cpu", *, state_file: Path | None = None) -> str | None:
    """The last local build of `variant`: what `invoke kind-up` loads into kind."""
    return recorded(variant, state_file=state_file).get("ref")
