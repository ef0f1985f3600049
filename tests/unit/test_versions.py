"""Versions from their one home each: raybake's in pyproject.toml, the pins in requirements.txt."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from raybake.clusters.address import AddressBackend
from raybake.clusters.base import Placed
from raybake.config import Settings
from raybake.spec import JobSpec
from raybake.versions import PYPROJECT, ROOT, origin_env, pins, raybake_version


def test_pins_come_from_requirements():
    assert pins()["ray"] and pins()["torch"] and pins()["transformers"]


def test_raybake_version_is_pyprojects_and_invoke_versions_shows_it():
    assert raybake_version() == tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    shown = subprocess.run(
        [sys.executable, "-m", "invoke", "versions"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert f"RAYBAKE_VERSION={raybake_version()}" in shown
    assert f"RAY_VERSION={pins()['ray']}" in shown


def test_the_job_is_told_the_version_it_records_in_its_manifest():
    spec = JobSpec(corpus="s3://bucket/corpus", output="s3://bucket/out", name="j")
    env = AddressBackend(Settings(), "http://127.0.0.1:8265").runtime_env(Placed(named=spec, runs=spec))
    assert env["env_vars"]["RAYBAKE_VERSION"] == raybake_version() == origin_env()["RAYBAKE_VERSION"]
    # tests/ray/test_address.py reads it back from a real job's manifest.json.
