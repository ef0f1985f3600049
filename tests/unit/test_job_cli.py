"""`python -m job` as the client runs it: help, --check, and a driver that starts without torch."""

from __future__ import annotations

import json
import subprocess
import sys

from raybake.versions import ROOT


def test_job_help_and_check_refusal_through_the_command_line(tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "job", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert "--text-field" in help_text.stdout and "resumes" in help_text.stdout
    (tmp_path / "a.jsonl").write_text('{"body": "x"}\n')
    checked = subprocess.run(
        [sys.executable, "-m", "job", "--check", "--corpus", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 2
    assert "has no field 'text'" in checked.stdout and "--text-field" in checked.stdout


def test_the_job_driver_starts_without_importing_the_framework():
    # The driver only plans and dispatches; importing torch there cost seconds of start time.
    probe = "import sys, job.__main__, job.driver; print('torch' in sys.modules, 'transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_the_manifests_versions_name_the_framework_without_the_driver_importing_it():
    # Even a rerun with nothing left to do, which starts no worker, records what the job runs on.
    probe = (
        "import json, sys; from job.spec import versions; v = versions(); "
        "print(json.dumps([v, 'torch' in sys.modules, 'transformers' in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    versions, torch_imported, transformers_imported = json.loads(done.stdout)
    import torch
    import transformers

    assert versions["torch"] == torch.__version__ and versions["transformers"] == transformers.__version__
    assert not torch_imported and not transformers_imported
