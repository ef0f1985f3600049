"""The image a real-cluster job runs: flag or setting first, else what build and push recorded."""

from __future__ import annotations

import pytest

from raybake import state
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.image.pushed import image_for, last_pushed, local_image

PUSHED = "registry.example/org/raybake@sha256:" + "a" * 64


@pytest.fixture
def settings(tmp_path):
    recorded = Settings(variant="cuda", state_file=str(tmp_path / "state.json"))
    state.record_image(recorded, "cuda", {"ref": "registry.example/org/raybake:cuda-1", "pushed": PUSHED})
    state.record_image(recorded, "cpu", {"ref": "registry.example/org/raybake:cpu-1"})
    return recorded


def test_the_pushed_digest_of_the_variant_is_the_default(settings):
    assert last_pushed(settings) == PUSHED
    assert image_for(settings) == PUSHED
    assert image_for(Settings(**{**settings.__dict__, "image": "mine:1"})) == "mine:1"


def test_kind_gets_the_local_build(settings):
    assert local_image(settings, "cpu") == "registry.example/org/raybake:cpu-1"


def test_a_variant_never_pushed_says_what_to_run(settings):
    with pytest.raises(RaybakeError, match="invoke push --variant cpu"):
        image_for(Settings(**{**settings.__dict__, "variant": "cpu"}))
