"""docs/configuration.md's generated tables are current, and list every setting and job option."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from raybake.config import Settings
from raybake.versions import ROOT
from tools import docs


def test_the_configuration_page_is_what_invoke_docs_writes():
    checked = subprocess.run(
        [sys.executable, "-m", "invoke", "dev.docs", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_every_setting_has_a_row_and_a_note():
    page = docs.PAGE.read_text()
    notes = docs.setting_notes()
    for setting in dataclasses.fields(Settings):
        assert f"| `{setting.name}` | `INVOKE_RAYBAKE_{setting.name.upper()}` |" in page
        assert notes[setting.name], f"config.py has no comment above {setting.name}"


def test_a_stale_block_is_replaced_and_a_missing_one_added(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\n{docs.BEGIN.format(name='settings')}\nstale row\n{docs.END.format(name='settings')}\n")
    written = docs.render({"backend": {"--backend": ["submit"]}}, page)
    assert "stale row" not in written and "| `backend` |" in written and "`--backend` (submit)" in written
    assert written.count(docs.BEGIN.format(name="job options")) == 1 and "--text-field" in written
