"""A corpus given as a presigned URL: read byte for byte, run to SUCCEEDED, its signature shown nowhere.

A tiny HTTP server on loopback stands in for object storage: it serves the file only when the
query arrives exactly as signed (a re-quoted `%2F` or a lost `;` would be a 403, as S3 answers),
and records every request. The run goes through `invoke submit` on a real local Ray with token
auth; afterwards neither the planted signature nor the Ray token is in anything the run printed
or wrote: its output, the job's log, the Ray session's logs, the results.
"""

from __future__ import annotations

import http.server
import json
import re
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from raycluster import invoke

from raybake.versions import ROOT

EXAMPLE = ROOT / "examples" / "corpus" / "articles.jsonl"


class ObjectStore(http.server.ThreadingHTTPServer):
    def __init__(self, body: bytes, query: str) -> None:
        self.body, self.query, self.seen = body, query, []
        super().__init__(("127.0.0.1", 0), Handler)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/bucket/{name}?{self.query}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: ObjectStore

    def _answer(self, *, body: bool) -> None:
        self.server.seen.append(self.path)
        path, _, query = self.path.partition("?")
        if query != self.server.query:
            self.send_error(403, "SignatureDoesNotMatch")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        if body:
            self.wfile.write(self.server.body)

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def store() -> Iterator[ObjectStore]:
    signature = f"planted-sig-{secrets.token_hex(8)}%2F;a$b'c\"d"
    query = f"X-Amz-Credential=AKIAPLANTED%2F20261126&X-Amz-Signature={signature}&x-id=GetObject"
    server = ObjectStore(EXAMPLE.read_bytes(), query)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_presigned_url_corpus_runs_to_succeeded_and_its_signature_shows_nowhere(ray_head, tmp_path, store):
    url = store.url("c.jsonl")
    env = ray_head.invoke_env(tmp_path / "results", RAY_AUTH_TOKEN=ray_head.token)
    done = invoke(env, "submit", "--corpus", url)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SUCCEEDED" in done.stdout and "documents: 40 (40 ok" in done.stdout, done.stdout[-2000:]
    # Every request, the client's check and the job's reads, carried the query as signed.
    assert store.seen and all(path == f"/bucket/c.jsonl?{store.query}" for path in store.seen)

    job_id = re.search(r"submitted (\S+);", done.stdout).group(1)
    out = tmp_path / "results" / job_id
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["corpus"] == url.replace(
        store.query, "X-Amz-Credential=***&X-Amz-Signature=***&x-id=GetObject"
    )
    seen = {
        "submit output": done.stdout + done.stderr,
        "invoke logs": invoke(env, "logs", "--job", job_id).stdout,
        "invoke jobs": invoke(env, "jobs").stdout,
        **{str(f): f.read_text(errors="replace") for f in out.rglob("*") if f.is_file() and f.suffix != ".parquet"},
        **{str(f): f.read_text(errors="replace") for f in Path(ray_head.temp_dir).rglob("*.log") if f.is_file()},
        **{str(f): f.read_text(errors="replace") for f in Path(ray_head.temp_dir).rglob("*.out") if f.is_file()},
    }
    assert "raybake: done: 40 ok" in seen["invoke logs"]
    planted = ["planted-sig-", "AKIAPLANTED", ray_head.token]
    leaks = [(where, secret) for where, text in seen.items() for secret in planted if secret in text]
    assert not leaks


def test_a_presigned_url_of_an_unknown_format_is_refused_before_submission(ray_head, tmp_path, store):
    env = ray_head.invoke_env(tmp_path / "results", RAY_AUTH_TOKEN=ray_head.token)
    done = invoke(env, "submit", "--corpus", store.url("c.xlsx"))
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "refused: unknown corpus format for 1 file(s): 'c.xlsx'" in done.stderr
    assert "planted-sig-" not in done.stdout + done.stderr and "submitted" not in done.stdout
