"""JobSpec: the `python -m job` command line, what it refuses, and the job id."""

from __future__ import annotations

import re
import shlex

import pytest

from job.__main__ import expand_spec
from raybake.errors import RaybakeError
from raybake.spec import SPEC_VARIABLE, JobSpec, shown_entrypoint, with_id


def test_the_options_travel_out_of_band_as_base64_that_no_shell_reads(monkeypatch):
    corpus = 'my docs/$(rm -rf ~)/it\'s `x` "q";&x=1.jsonl'
    spec = JobSpec(corpus=corpus, output="out dir", model="$HOME", name="n")
    # The entrypoint names where the options are, never what they are.
    assert shlex.split(spec.command()) == ["python", "-m", "job", "--spec-from", "env"]
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", spec.encoded())
    monkeypatch.setenv(SPEC_VARIABLE, spec.encoded())
    assert expand_spec(["--spec-from", "env"]) == spec.arguments()
    assert expand_spec(["--check", "--spec-from", "stdin"], stdin=spec.encoded()) == ["--check", *spec.arguments()]
    assert spec.arguments()[:4] == ["--corpus", corpus, "--output", "out dir"]


def test_a_spec_from_nowhere_is_refused_in_one_line(monkeypatch, capsys):
    monkeypatch.delenv(SPEC_VARIABLE, raising=False)
    for argv in (["--spec-from", "argv"], ["--spec-from", "env"]):
        with pytest.raises(SystemExit):
            expand_spec(argv)
    assert "--spec-from takes one of env, stdin or a file's absolute path, got 'argv'" in capsys.readouterr().err


def test_a_spec_file_is_read_once_and_gone(tmp_path):
    spec = JobSpec(corpus="https://h/c.jsonl?X-Amz-Signature=s1g", output="out")
    path = tmp_path / "job.spec"
    path.write_text(spec.encoded())
    assert expand_spec(["--spec-from", str(path)]) == spec.arguments()
    assert not path.exists()


def test_a_credentialed_corpus_url_reaches_the_job_intact_and_shows_masked(monkeypatch):
    url = "https://me:hunter2@host/c.jsonl?X-Amz-Signature=s1g;$'\"&x=1"
    spec = JobSpec(corpus=url, output="out")
    assert "hunter2" not in spec.command() and "s1g" not in spec.command()
    monkeypatch.setenv(SPEC_VARIABLE, spec.encoded())
    assert expand_spec(["--spec-from", "env"])[1] == url
    shown = spec.shown_command()
    assert "hunter2" not in shown and "s1g" not in shown and "x=1" in shown
    assert shown_entrypoint(spec.command(), {SPEC_VARIABLE: spec.encoded()}) == shown
    assert shown_entrypoint(spec.command()) == spec.command()


def test_unknown_task_is_refused():
    with pytest.raises(RaybakeError, match="unknown task 'summarise'"):
        JobSpec(corpus="c", output="o", task="summarise")


def test_the_job_id_is_the_given_name_or_a_hash_of_what_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def named(name=None, **changes):
        return with_id(JobSpec(**{"corpus": "docs", "output": "", **changes}), name=name, results_dir="res")

    first = named()
    assert re.fullmatch(r"raybake-embed-[0-9a-f]{8}", first.name)
    # Paths on this machine are made absolute here, once, and carried so.
    assert first.output == str(tmp_path / "res" / first.name) and first.corpus == str(tmp_path / "docs")
    assert named() == first and named(corpus=str(tmp_path / "docs")).name == first.name
    others = [named(model="m"), named(job_args=("--max-length", "8")), named(output="elsewhere"), named(task="ner")]
    assert len({first.name, *(o.name for o in others)}) == 5
    assert others[2].output == str(tmp_path / "elsewhere") and others[3].name.startswith("raybake-ner-")
    assert named("nightly-42").name == "nightly-42" and named("nightly-42").output == str(tmp_path / "res/nightly-42")
    monkeypatch.chdir(tmp_path.parent)
    assert named().name != first.name  # the same relative path, another directory: another corpus
