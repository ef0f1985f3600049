"""JobSpec: the `python -m job` command line, what it refuses, and the job id."""

from __future__ import annotations

import re
import shlex

import pytest

from raybake.errors import RaybakeError
from raybake.spec import JobSpec, with_id


def test_hostile_paths_stay_data_in_the_entrypoint():
    corpus = "my docs/$(rm -rf ~)/it's.jsonl"
    spec = JobSpec(corpus=corpus, output="out dir", name="n")
    assert shlex.split(spec.command())[4] == corpus
    assert shlex.split(spec.command())[:3] == ["python", "-m", "job"]


def test_a_password_in_a_corpus_url_is_refused_without_showing_it():
    with pytest.raises(RaybakeError, match=r"--corpus URL carries a password \('https://me:\*\*\*@host/c'\)") as info:
        JobSpec(corpus="https://me:hunter2@host/c", output="out")
    assert "hunter2" not in str(info.value)
    assert JobSpec(corpus="s3://bucket/docs", output="s3://bucket/out").corpus == "s3://bucket/docs"


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
