"""Settings: defaults < invoke.yaml < INVOKE_RAYBAKE_* < flags, with names and types checked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from raybake import config
from raybake.errors import RaybakeError
from raybake.versions import ROOT


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


def test_every_setting_has_its_variable_read_as_its_type():
    environ = {"INVOKE_RAYBAKE_VERIFY_TLS": "false", "INVOKE_RAYBAKE_LOCAL_NUM_CPUS": "3", "PATH": "/bin"}
    loaded = config.load({"verify_tls": True}, environ=environ)
    assert loaded.verify_tls is False and loaded.local_num_cpus == 3
    # A flag still wins over the variable; a misspelt variable is refused by name.
    assert config.load({}, environ=environ, local_num_cpus=5).local_num_cpus == 5
    with pytest.raises(RaybakeError, match="unknown raybake setting.*bakend"):
        config.load({}, environ={"INVOKE_RAYBAKE_BAKEND": "local"})


def test_a_variable_for_a_setting_invoke_yaml_does_not_name_reaches_the_task():
    # remote_output is not in invoke.yaml: invoke alone would drop the variable.
    env = {**os.environ, "INVOKE_RAYBAKE_REMOTE_OUTPUT": "s3://bucket/results", "HOME": "/nonexistent"}
    argv = [sys.executable, "-m", "invoke", "submit", "--backend", "rayjob", "--dry-run", "--corpus", "s3://b/c"]
    shown = subprocess.run(
        [*argv, "--image", "img@sha256:" + "a" * 64], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert "raybake.io/output: s3://bucket/results/raybake-embed-" in shown.stdout
