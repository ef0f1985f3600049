"""Which image a real-cluster job runs: --image / raybake.image, else what `invoke build`/`push` recorded.

`invoke build` records each variant's local reference and `invoke push` its pushed
`repository@sha256:digest` in the state file (raybake/state.py). Real clusters get the pushed
digest of `raybake.variant` (a tag can move, a digest cannot); kind gets a local reference,
loaded into its node.
"""

from __future__ import annotations

from raybake import state
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError


def last_pushed(settings: Settings) -> str | None:
    return state.image(settings, settings.variant).get("pushed")


def image_for(settings: Settings) -> str:
    image = settings.image or last_pushed(settings)
    if not image:
        variant = settings.variant
        raise RaybakeError(
            f"no image for the cluster's pods: run `invoke build --variant {variant}` and `invoke push "
            f"--variant {variant}` first, or pass --image REPOSITORY@sha256:DIGEST (or set raybake.image)",
            ExitCode.REFUSED,
        )
    return image


def local_image(settings: Settings, variant: str = "cpu") -> str | None:
    """The last local build of `variant`: what `invoke kind.up` loads into kind."""
    return state.image(settings, variant).get("ref")
