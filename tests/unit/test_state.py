"""The state file: what `invoke build`, `push` and `up` remember, read and written only through raybake.state."""

from __future__ import annotations

import json

from raybake import state
from raybake.config import Settings


def test_images_are_recorded_per_variant_and_read_back(tmp_path):
    settings = Settings(state_file=str(tmp_path / "state" / "state.json"))
    assert state.images(settings) == {} and state.image(settings, "cpu") == {}
    state.record_image(settings, "cpu", {"ref": "raybake:cpu-1"})
    state.record_image(settings, "cuda", {"ref": "raybake:cuda-1", "pushed": "r/raybake@sha256:1"})
    state.record_image(settings, "cpu", {"ref": "raybake:cpu-2"})
    assert state.image(settings, "cpu") == {"ref": "raybake:cpu-2"}
    assert set(state.images(settings)) == {"cpu", "cuda"}
    assert (
        json.loads((tmp_path / "state" / "state.json").read_text())["images"]["cuda"]["pushed"] == "r/raybake@sha256:1"
    )


def test_a_cluster_is_forgotten_when_recorded_as_none_and_nothing_else_is(tmp_path):
    settings = Settings(state_file=str(tmp_path / "state.json"))
    state.record_image(settings, "cpu", {"ref": "raybake:cpu-1"})
    state.record_cluster(settings, "raybake", {"url": "http://127.0.0.1:8266"})
    assert state.clusters(settings) == [{"url": "http://127.0.0.1:8266"}]
    state.record_cluster(settings, "raybake", None)
    assert state.clusters(settings) == [] and state.image(settings, "cpu") == {"ref": "raybake:cpu-1"}
    # Written whole through a temporary file: no partial file is ever left beside it.
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
