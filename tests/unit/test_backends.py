"""The backend registry: each name is a backend that can be made, and settings accept no other."""

from __future__ import annotations

import importlib

import pytest

from raybake import config
from raybake.backends import BACKENDS
from raybake.errors import RaybakeError


@pytest.mark.parametrize("name", list(BACKENDS))
def test_each_registered_backend_names_what_makes_it(name):
    module, _, attribute = BACKENDS[name].makes.partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    assert config.load({"backend": name}).backend == name


def test_a_name_the_registry_lacks_is_refused_with_the_choices():
    with pytest.raises(RaybakeError, match="choose one of local, address, rayjob"):
        config.load({"backend": "slurm"})
