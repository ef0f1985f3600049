"""invoke.yaml states the defaults users read; they must be the ones Settings really has."""

from __future__ import annotations

import yaml

from raybake import config
from raybake.versions import ROOT


def test_invoke_yaml_defaults_are_settings_defaults():
    written = yaml.safe_load((ROOT / "invoke.yaml").read_text())["raybake"]
    loaded, default = config.load(written), config.Settings()
    assert {k: getattr(loaded, k) for k in written} == {k: getattr(default, k) for k in written}
