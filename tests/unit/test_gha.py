"""The runner glue: job summary, env and output files, kubeconfig, PR comments, disk."""

from __future__ import annotations

import base64
import io
import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from raybake.errors import RaybakeError
from tools import gha

KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"


@pytest.fixture()
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    files = {name: tmp_path / name.lower() for name in ("GITHUB_STEP_SUMMARY", "GITHUB_ENV", "GITHUB_OUTPUT")}
    for name, path in files.items():
        path.touch()
        monkeypatch.setenv(name, str(path))
    return files


def test_summary_appends_on_a_runner_and_prints_elsewhere(runner, monkeypatch, capsys) -> None:
    gha.append_summary("one")
    gha.append_summary("two\n")
    assert runner["GITHUB_STEP_SUMMARY"].read_text() == "one\n\ntwo\n\n"
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    gha.append_summary("three\n")
    assert capsys.readouterr().out == "three\n"


def test_env_and_outputs_refuse_a_forged_second_line(runner) -> None:
    gha.export_env("A", "1")
    gha.set_output("digest", "sha256:abc")
    assert runner["GITHUB_ENV"].read_text() == "A=1\n"
    assert runner["GITHUB_OUTPUT"].read_text() == "digest=sha256:abc\n"
    with pytest.raises(RaybakeError, match="multi-line"):
        gha.set_output("x", "1\nPATH=/evil")


@pytest.mark.parametrize("encode", ["yaml", "base64", "base64 -w 76"])
def test_kubeconfig_from_yaml_or_base64_is_private(runner, tmp_path, monkeypatch, encode: str) -> None:
    encoded = base64.encodebytes((KUBECONFIG * 3).encode()).decode()  # `base64`'s own output: 76 columns
    value = {"yaml": KUBECONFIG * 3, "base64": encoded.replace("\n", ""), "base64 -w 76": encoded}[encode]
    monkeypatch.setenv("RAYBAKE_KUBECONFIG", value)
    out = gha.write_kubeconfig(tmp_path / "kube" / "config")
    assert out.read_text() == KUBECONFIG * 3
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert runner["GITHUB_ENV"].read_text() == f"KUBECONFIG={out.resolve()}\n"


@pytest.mark.parametrize(("value", "message"), [("", "is empty"), ("not base64 !", "neither kubeconfig")])
def test_kubeconfig_refuses_what_it_cannot_use(tmp_path, monkeypatch, value: str, message: str) -> None:
    monkeypatch.setenv("RAYBAKE_KUBECONFIG", value)
    with pytest.raises(RaybakeError, match=message):
        gha.write_kubeconfig(tmp_path / "config")
    assert not (tmp_path / "config").exists()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", "registry.example/owner/repo:sha-abc"),
        ("v1.2.0", "registry.example/owner/repo:v1.2.0"),
        ("sha256:00ff", "registry.example/owner/repo@sha256:00ff"),
        ("example.org/other/image:tag", "example.org/other/image:tag"),
    ],
)
def test_image_ref(given: str, expected: str) -> None:
    image = gha.image_ref(repository="registry.example/Owner/Repo", given=given, sha="abc")
    assert image == ("registry.example/owner", "repo", expected)
    assert image.repository == "registry.example/owner/repo"


@pytest.mark.parametrize(("repository", "message"), [("r/n", "GITHUB_SHA"), ("name", "REGISTRY/OWNER/NAME")])
def test_image_ref_refuses(repository: str, message: str) -> None:
    with pytest.raises(RaybakeError, match=message):
        gha.image_ref(repository=repository, given="")


class _FakeGitHub(BaseHTTPRequestHandler):
    comments: ClassVar[list[dict]] = []
    requests: ClassVar[list[tuple[str, str, dict | None]]] = []

    def _reply(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path, None))
        self._reply(self.comments)

    def do_POST(self) -> None:
        body = self._body()
        self.requests.append(("POST", self.path, body))
        host = f"http://127.0.0.1:{self.server.server_port}"
        number = len(self.comments) + 1
        comment = {"url": f"{host}/repos/o/r/issues/comments/{number}", "html_url": f"https://pr/1#c{number}"}
        comment.update(body, user={"type": "Bot"})
        self.comments.append(comment)
        self._reply(comment)

    def do_PATCH(self) -> None:
        body = self._body()
        self.requests.append(("PATCH", self.path, body))
        comment = next(c for c in self.comments if c["url"].endswith(self.path))
        comment.update(body)
        self._reply(comment)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def github() -> Iterator[str]:
    _FakeGitHub.comments, _FakeGitHub.requests = [], []
    server = HTTPServer(("127.0.0.1", 0), _FakeGitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_pr_comment_is_posted_once_then_updated(github: str) -> None:
    # Someone pasted the marker by hand: not ours to edit.
    _FakeGitHub.comments.append({"url": f"{github}/x", "body": gha.COMMENT_MARKER, "user": {"type": "User"}})
    post = {"repository": "o/r", "number": 7, "token": "t", "api_url": github}
    assert gha.comment_on_pr(body="first", **post) == "https://pr/1#c2"
    gha.comment_on_pr(body="second", **post)
    methods = [(m, p) for m, p, _ in _FakeGitHub.requests]
    assert methods == [
        ("GET", "/repos/o/r/issues/7/comments?per_page=100"),
        ("POST", "/repos/o/r/issues/7/comments"),
        ("GET", "/repos/o/r/issues/7/comments?per_page=100"),
        ("PATCH", "/repos/o/r/issues/comments/2"),
    ]
    assert [c["body"] for c in _FakeGitHub.comments] == [gha.COMMENT_MARKER, f"{gha.COMMENT_MARKER}\nsecond"]


def test_pr_comment_needs_a_token() -> None:
    with pytest.raises(RaybakeError, match="pull-requests: write"):
        gha.comment_on_pr(repository="o/r", number=1, body="x", token="", api_url="http://127.0.0.1:9")


def test_pr_comment_says_when_github_is_unreachable() -> None:
    with pytest.raises(RaybakeError, match="unreachable"):
        gha.comment_on_pr(repository="o/r", number=1, body="x", token="t", api_url="http://127.0.0.1:9")


def test_free_disk_refuses_off_a_runner(monkeypatch) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    with pytest.raises(RaybakeError, match="GitHub runners only"):
        gha.free_disk(paths=())


def test_free_disk_deletes_the_listed_directories(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    bloat = tmp_path / "toolchain"
    (bloat / "deep").mkdir(parents=True)
    (bloat / "deep" / "file").write_bytes(b"x" * 1024)
    before, after = gha.free_disk(paths=(str(bloat), str(tmp_path / "absent")), prune_images=False)
    assert not bloat.exists()
    assert before > 0 and after > 0


RUN = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "9"}


def test_run_url(monkeypatch) -> None:
    for name, value in RUN.items():
        monkeypatch.setenv(name, value)
    assert gha.run_url() == "https://github.com/o/r/actions/runs/9"
    monkeypatch.delenv("GITHUB_RUN_ID")
    assert gha.run_url() == ""


GITHUB = Path(__file__).parent / "fixtures" / "github"
HEAD_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"


def _trial(monkeypatch, runner, *, actor="maintainer", change=None, permission="write"):
    """trial_pull_request against recorded responses of the two endpoints it reads."""
    pulls = json.loads((GITHUB / "pulls.json").read_text())
    granted = {**json.loads((GITHUB / "collaborator-permission.json").read_text()), "permission": permission}
    if change:
        change(pulls[0])
    asked = []

    def api(method, url, token, body=None):
        asked.append(url)
        if "/pulls?" in url:
            return pulls if "head=contributor:faster-batches" in url else []
        if url.endswith(f"/collaborators/{actor}/permission"):
            return granted
        raise AssertionError(url)

    monkeypatch.setattr(gha, "_api", api)
    number = gha.trial_pull_request(
        repository="octo-org/raybake",
        head="contributor:faster-batches",
        head_sha=HEAD_SHA,
        actor=actor,
        token="t",
        api_url="https://api.github.com",
    )
    return number, asked


def test_a_writer_other_than_the_author_starts_a_trial(monkeypatch, runner) -> None:
    number, asked = _trial(monkeypatch, runner)
    assert number == 12 and runner["GITHUB_ENV"].read_text() == "PR_NUMBER=12\n"
    assert asked[-1] == "https://api.github.com/repos/octo-org/raybake/collaborators/maintainer/permission"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"actor": "contributor"}, "'contributor' opened pull request #12: its author cannot start"),
        ({"actor": "Contributor"}, "its author cannot start"),
        ({"permission": "read"}, "has 'read' access"),
        ({"change": lambda pr: pr.update(labels=[])}, "no longer carries the 'run-job' label"),
        ({"change": lambda pr: pr["head"].update(sha="0" * 40)}, "no open pull request has"),
    ],
)
def test_a_trial_is_refused_to_its_author_readers_and_stale_heads(monkeypatch, runner, kwargs, message) -> None:
    with pytest.raises(RaybakeError, match=message):
        _trial(monkeypatch, runner, **kwargs)
    assert runner["GITHUB_ENV"].read_text() == ""


def test_a_jobs_log_cannot_steer_the_runner(monkeypatch):
    """The runner reads `::command::` lines from a step's output: inside the block they are text.
    The resume token is random per block, so a log cannot guess it and end the stop itself."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    tokens = []
    for _ in range(2):
        out = io.StringIO()
        with gha.commands_stopped(out):
            out.write("::add-mask::x\n::stop-commands::guess\n")
        first, *middle, last = out.getvalue().splitlines()
        token = first.removeprefix("::stop-commands::")
        assert len(token) == 32 and last == f"::{token}::" and middle == ["::add-mask::x", "::stop-commands::guess"]
        tokens.append(token)
    assert tokens[0] != tokens[1]
    monkeypatch.delenv("GITHUB_ACTIONS")
    off = io.StringIO()
    with gha.commands_stopped(off):
        pass
    assert off.getvalue() == ""
