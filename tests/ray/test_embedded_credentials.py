"""Object-store credentials on the embedded local Ray, as a new user holds them: exported in the shell.

A bucket on a real S3 API (moto's server on loopback, credentials checked, tests/s3server.py) and
`invoke submit --corpus s3://... --output s3://...` on the Ray that raybake starts itself:
- the job reads and writes with the credentials the client listed the corpus with, whether the
  head was started by that shell or by one without them; the head itself never holds them;
- a second job, submitted without credentials, finds them nowhere: not in its environment, not
  in its runtime env, not in the job listing;
- every reason a job cannot use the store (no credentials, wrong ones, ones for another bucket,
  a bucket that does not exist, a model that does not load) ends the submit in one line with its
  exit code, no traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import s3server
from raycluster import clean_environ, free_port, group_members

from raybake.versions import ROOT

EXAMPLE = ROOT / "examples" / "corpus" / "articles.jsonl"
DOCS = 40
PROBE = """
import json, os, sys, urllib.request
import ray

ray.init()
token = open(os.environ["RAY_AUTH_TOKEN_PATH"]).read().strip()
url = f"http://127.0.0.1:{sys.argv[1]}/api/jobs/"
request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
seen = {
    "environ": dict(os.environ),
    "runtime_env": ray.get_runtime_context().runtime_env,
    "jobs": json.loads(urllib.request.urlopen(request).read()),
}
print("probe:", json.dumps(seen, default=str))
"""


@pytest.fixture(scope="module")
def s3():
    server = s3server.start(narrow=("corpus",))
    fs = server.fs()
    for bucket in ("corpus", "results"):
        fs.mkdir(bucket)
    fs.pipe("corpus/c/docs.jsonl", EXAMPLE.read_bytes())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """A user's shell with no store variables: its own HOME, ports, state file and results."""
    root = tmp_path_factory.mktemp("creds")
    (root / "home").mkdir()
    env = {
        **{k: v for k, v in clean_environ().items() if not k.startswith(("AWS_", "GOOGLE_", "AZURE_"))},
        "HOME": str(root / "home"),
        "INVOKE_RAYBAKE_LOCAL_DASHBOARD_PORT": str(free_port()),
        "INVOKE_RAYBAKE_LOCAL_RAY_PORT": str(free_port()),
        "INVOKE_RAYBAKE_STATE_FILE": str(root / "state" / "state.json"),
        "INVOKE_RAYBAKE_RESULTS_DIR": str(root / "results"),
    }
    yield env
    invoke(env, "down")


def exported(s3, **changes: str) -> dict[str, str]:
    """The variables the user exports, as the issue measured it: keys and the store's endpoint."""
    return {**s3.credentials(), "AWS_ENDPOINT_URL_S3": s3.endpoint, **changes}


def invoke(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "invoke", "-r", str(ROOT), *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def head_of(shell) -> dict:
    state = json.loads(Path(shell["INVOKE_RAYBAKE_STATE_FILE"]).read_text())
    return state["local_ray"][shell["INVOKE_RAYBAKE_LOCAL_DASHBOARD_PORT"]]


def environ_of(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")


def one_line(done: subprocess.CompletedProcess, code: int) -> str:
    """The submit ended with `code`, its failure in one line and no traceback anywhere it printed."""
    shown = done.stdout + done.stderr
    assert done.returncode == code, shown[-4000:]
    assert "Traceback" not in shown and 'File "' not in shown, shown[-4000:]
    ended = [line for line in shown.splitlines() if ": FAILED (" in line or line.startswith("raybake: ")]
    return ended[-1]


def succeeded(s3, shell, output: str) -> str:
    done = invoke({**shell, **exported(s3)}, "submit", "--corpus", "s3://corpus/c/docs.jsonl", "--output", output)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert re.search(r": SUCCEEDED\b", done.stdout)
    job_id = re.search(r"submitted (\S+);", done.stdout).group(1)
    manifest = json.loads(s3.fs().cat(f"{output.removeprefix('s3://')}/manifest.json"))
    assert manifest["counts"]["ok"] == manifest["counts"]["documents"] == DOCS
    parts = s3.fs().find(f"{output.removeprefix('s3://')}/parts")
    assert parts and all(p.endswith(".parquet") for p in parts)
    return job_id


def test_exported_credentials_reach_the_job_and_never_the_head(s3, shell):
    job_id = succeeded(s3, shell, "s3://results/first")
    head = head_of(shell)
    secret = s3.secret_key
    assert not [pid for pid in group_members(head["pid"]) if secret in environ_of(pid)]
    # The job deleted its file as it ended.
    jobs = Path(shell["INVOKE_RAYBAKE_STATE_FILE"]).parent / "jobs"
    assert not (jobs / f"{job_id}.credentials.json").exists() and not (jobs / f"{job_id}.spec").exists()


def test_no_credentials_end_in_one_line_on_a_ray_started_without_them(s3, shell):
    down = invoke(shell, "down")
    assert down.returncode == 0, down.stderr
    # A local corpus passes the client's check; the job cannot write the output: exit 3.
    done = invoke(shell, "submit", "--corpus", "examples/corpus", "--output", "s3://results/none")
    line = one_line(done, 3)
    assert "no credentials for the object store" in line and "export the store's credentials" in line, line
    # With the corpus in the store, the client's own check says so before anything is submitted.
    done = invoke(shell, "submit", "--corpus", "s3://corpus/c/docs.jsonl", "--output", "s3://results/none")
    assert one_line(done, 3).startswith("raybake: no credentials for the object store"), done.stderr
    assert "submitted" not in done.stdout


def test_exported_credentials_work_on_a_ray_that_was_started_without_them(s3, shell):
    before = head_of(shell)
    succeeded(s3, shell, "s3://results/second")
    assert head_of(shell)["pid"] == before["pid"]


def test_a_second_job_without_credentials_finds_them_nowhere(s3, shell, tmp_path):
    first = succeeded(s3, shell, "s3://results/third")
    (tmp_path / "probe.py").write_text(PROBE)
    port = shell["INVOKE_RAYBAKE_LOCAL_DASHBOARD_PORT"]
    done = invoke(shell, "submit", "--entrypoint", f"python probe.py {port}", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    job_id = re.search(r"submitted (\S+);", done.stdout).group(1)
    log = invoke(shell, "logs", "--job", job_id).stdout
    seen = json.loads(log.split("probe: ", 1)[1].splitlines()[0])
    assert first in json.dumps(seen["jobs"])  # it could list the first job
    for where in ("environ", "runtime_env", "jobs"):
        text = json.dumps(seen[where])
        assert s3.secret_key not in text and s3.access_key not in text, where
    assert s3.secret_key not in invoke(shell, "jobs").stdout


@pytest.mark.parametrize(
    ("case", "corpus", "output", "code", "says"),
    [
        ("wrong secret", "s3://corpus/c/docs.jsonl", "s3://results/x", 3, "refused access to --corpus"),
        ("another bucket's", "examples/corpus", "s3://results/other", 3, "refused the credentials (403"),
        ("no such bucket", "s3://no-such-bucket/c.jsonl", "s3://results/y", 2, "corpus not found"),
        ("no such key", "s3://corpus/c/none.jsonl", "s3://results/y", 2, "corpus not found"),
    ],
)
def test_each_reason_the_store_refuses_is_one_line_and_its_code(s3, shell, case, corpus, output, code, says):
    changes = {
        "wrong secret": {"AWS_SECRET_ACCESS_KEY": "not-the-secret"},
        "another bucket's": s3.credentials(only="corpus"),
    }.get(case, {})
    done = invoke({**shell, **exported(s3, **changes)}, "submit", "--corpus", corpus, "--output", output)
    line = one_line(done, code)
    assert says in line, line
    assert "not-the-secret" not in done.stdout + done.stderr


def test_a_model_that_cannot_be_loaded_is_one_line(shell, tmp_path):
    missing = tmp_path / "no-model-here"
    done = invoke(
        shell, "submit", "--corpus", "examples/corpus", "--model", str(missing), "--output", str(tmp_path / "o")
    )
    assert done.returncode == 2, done.stdout[-4000:] + done.stderr[-4000:]
    # The job's own traceback stays in its log; what Ray itself forwards of the dying worker
    # (its C++ abort dump) is Ray's.
    assert "(a traceback: `invoke logs --job ID` shows it)" in done.stdout and "raybake-traceback" not in done.stdout
    (line,) = [line for line in done.stdout.splitlines() if ": FAILED (" in line]
    assert "the model cannot be loaded (" in line and "Repo id must be" in line and "check --model" in line, line
    assert "Traceback" in invoke(shell, "logs", "--job", re.search(r"submitted (\S+);", done.stdout).group(1)).stdout
