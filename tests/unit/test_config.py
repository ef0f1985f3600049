"""Settings: defaults < invoke.yaml < INVOKE_RAYBAKE_* < flags, with names and types checked."""

from __future__ import annotations

import pytest

from raybake import config
from raybake.errors import RaybakeError


def test_settings_precedence_and_types():
    s = config.load({"backend": "address", "local_dashboard_port": "9000"}, backend=None, address="http://h:8265")
    assert s.backend == "address" and s.local_dashboard_port == 9000 and s.address == "http://h:8265"
    assert config.load({"verify_tls": "false"}).verify_tls is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bakend": "local"}, "unknown raybake setting"),
        ({"backend": "slurm"}, "unknown backend 'slurm'"),
        ({"local_dashboard_port": "eighty"}, "must be int"),
    ],
)
def test_bad_settings_are_refused_by_name(values, message):
    with pytest.raises(RaybakeError, match=message):
        config.load(values)
