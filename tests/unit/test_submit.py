"""The submit flow from the front door: bad input is refused before anything runs."""

from __future__ import annotations

import subprocess
import sys

from raybake.versions import ROOT


def test_invoke_submit_refuses_bad_input_before_anything_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "submit", "--corpus", str(tmp_path / "missing")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "refused: corpus not found" in done.stderr
    assert "Traceback" not in done.stderr
