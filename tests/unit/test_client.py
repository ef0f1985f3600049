import re
import shlex
import subprocess
import sys

import pytest

from raybake import config
from raybake.clusters.address import AddressBackend, check_reachable
from raybake.clusters.follow import LogPrinter
from raybake.errors import RaybakeError
from raybake.spec import JobSpec, with_id
from raybake.versions import ROOT, pins


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


def test_pins_come_from_requirements():
    assert pins()["ray"] and pins()["torch"] and pins()["transformers"]


def test_progress_lines_become_a_bar_and_other_lines_pass_through(capsys):
    import io

    out = io.StringIO()
    printer = LogPrinter(out)
    printer.feed("hello\nraybake-progress docs=5/10 shards=1/2 rate=1.0/s eta=5s\npart")
    printer.feed("ial line\n")
    printer.close()
    text = out.getvalue()
    assert "hello" in text and "partial line" in text
    assert "raybake-progress" not in text
    assert "5/10" in text


def test_unreachable_cluster_fails_fast_with_one_line():
    with pytest.raises(RaybakeError, match="cannot reach the Ray cluster at 'http://127.0.0.1:1'") as info:
        check_reachable("http://127.0.0.1:1", timeout=2)
    assert info.value.code == 3
    with pytest.raises(RaybakeError, match="not a job submission URL"):
        AddressBackend(config.load(), "ftp://x").client


def test_job_help_and_check_refusal_through_the_command_line(tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "job", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert "--text-field" in help_text.stdout and "resumes" in help_text.stdout
    (tmp_path / "a.jsonl").write_text('{"body": "x"}\n')
    checked = subprocess.run(
        [sys.executable, "-m", "job", "--check", "--corpus", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 2
    assert "has no field 'text'" in checked.stdout and "--text-field" in checked.stdout


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


def test_the_job_driver_starts_without_importing_the_framework():
    # The driver only plans and dispatches; importing torch there cost seconds of start time.
    probe = "import sys, job.__main__, job.run; print('torch' in sys.modules, 'transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
