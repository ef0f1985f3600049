"""raybake.console: the client's one way to the terminal; library code never prints itself."""

from __future__ import annotations

import ast
import io

from raybake import console
from raybake.versions import ROOT


def test_say_prefixes_and_line_passes_text_as_given(capsys):
    console.say("submitted j1")
    console.line("documents: 41")
    console.warn("the cluster runs another image")
    console.aside("j1 was submitted again as j1-2")
    out, err = capsys.readouterr()
    assert out == "raybake: submitted j1\ndocuments: 41\nraybake: warning: the cluster runs another image\n"
    assert err == "raybake: j1 was submitted again as j1-2\n"


def test_a_caller_may_collect_its_own_stream():
    buffer = io.StringIO()
    console.say("building", out=buffer)
    console.line("Step 1/9", out=buffer, end="")
    assert buffer.getvalue() == "raybake: building\nStep 1/9"


def test_no_module_but_console_writes_to_the_terminal():
    writers = []
    for path in sorted((ROOT / "raybake").rglob("*.py")):
        if path.name == "console.py" and path.parent.name == "raybake":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id == "print":
                    writers.append(f"{path.relative_to(ROOT)}:{node.lineno} print")
                if (
                    isinstance(func, ast.Attribute)
                    and func.attr == "write"
                    and isinstance(func.value, ast.Attribute)
                    and func.value.attr in ("stdout", "stderr")
                ):
                    writers.append(f"{path.relative_to(ROOT)}:{node.lineno} sys.{func.value.attr}.write")
    assert writers == []
