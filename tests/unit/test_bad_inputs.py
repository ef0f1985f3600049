"""Bad corpus inputs: each file ends in error rows with their reason, or the corpus is refused
with one; the manifest always reconciles. The worker runs in-process with the real MiniLM."""

import collections
import contextlib
import dataclasses
import gzip
import http.server
import json
import os
import resource
import secrets
import stat
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from badinputs import make_bad_corpus, rows_by_file
from models import MINILM

from job.config import TaskOptions, WorkerConfig
from job.corpus import CorpusError, Fields, check, plan_shards, scan
from job.manifest import build_manifest
from job.output import Output
from job.pool import PoolRun
from job.worker import ShardWorker


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    config = WorkerConfig(
        task="embed",
        model=MINILM,
        options=TaskOptions(),
        fields=Fields(),
        corpus="",
        output=str(tmp_path_factory.mktemp("unused")),
        token_budget=None,
        max_batch_size=64,
        threads=1,
    )
    return ShardWorker(config)


def run_in_process(worker, corpus: Path, out: Path, fields: Fields | None = None, split_bytes: int = 64, **config):
    """What `python -m job` does, minus Ray: scan, check, plan, process every shard, build the manifest."""
    fields = fields or Fields()
    fs, files = scan(str(corpus))
    check(fs, files, fields)
    shards = plan_shards(files, split_bytes)
    job = dataclasses.replace(worker.config, fields=fields, corpus=str(corpus), output=str(out), **config)
    for shard in shards:
        worker.process(shard, job)
    spec = {"files": [[f.rel, f.size, f.version] for f in files], "model": MINILM}
    manifest = build_manifest(Output(str(out)), shards, spec, started=time.time(), pool=PoolRun(), resumed=0).to_json()
    return manifest, pq.read_table(out / "parts").to_pylist()


def assert_reconciles(manifest, rows):
    counts = manifest["counts"]
    assert counts["documents"] == counts["ok"] + counts["error"] == len(rows)
    assert counts["missing"] == 0 and manifest["shards"]["missing"] == 0
    assert len({r["source"] for r in rows}) == len(rows), "a document appears twice"


def test_the_bad_input_matrix_ends_in_rows_with_reasons(worker, tmp_path):
    expected = make_bad_corpus(tmp_path / "corpus")
    manifest, rows = run_in_process(worker, tmp_path / "corpus", tmp_path / "out")
    assert rows_by_file(rows) == expected
    assert_reconciles(manifest, rows)
    by_source = {r["source"]: r for r in rows}
    assert by_source["big.txt"]["truncated"] and by_source["big.txt"]["n_tokens"] == worker.task.max_length
    unreadable = [r["error"] for r in rows if r["error"] and r["error"].startswith("file unreadable")]
    assert any("EOFError" in e for e in unreadable) and any("BadGzipFile" in e for e in unreadable)


def test_duplicate_ids_are_kept_and_counted(worker, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    records = [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}, {"id": "a", "text": "three"}]
    (corpus / "x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (corpus / "y.jsonl").write_text(json.dumps({"id": "b", "text": "four"}) + "\n")
    manifest, rows = run_in_process(worker, corpus, tmp_path / "out", Fields(id="id"), split_bytes=40)
    assert sorted(r["id"] for r in rows) == ["a", "a", "b", "b"]
    assert manifest["counts"]["duplicate_ids"] == 2 and manifest["counts"]["ok"] == 4
    assert_reconciles(manifest, rows)


def test_a_cut_gzip_keeps_its_readable_records_and_ends_in_one_error_row(worker, tmp_path):
    whole = gzip.compress(b"".join(json.dumps({"text": f"t{i}"}).encode() + b"\n" for i in range(1000)))
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    manifest, rows = run_in_process(worker, tmp_path / "corpus", tmp_path / "out")
    errors = [r["error"] for r in rows if r["error"]]
    assert len(errors) == 1 and errors[0].startswith("file unreadable: EOFError: Compressed file ended")
    assert 0 < manifest["counts"]["ok"] < 1000
    assert_reconciles(manifest, rows)


def hostile_corpus(root: Path) -> dict[str, collections.Counter]:
    """Inputs built to exhaust a reader: each must end as error rows, with bounded memory."""
    root.mkdir()
    ok = json.dumps({"text": "fine"}).encode() + b"\n"
    # 1 GiB of zeros, no newline, in about 1 MiB of gzip.
    with gzip.open(root / "bomb.jsonl.gz", "wb", compresslevel=9) as f:
        zeros = bytes(1 << 20)
        for _ in range(1024):
            f.write(zeros)
    (root / "wide.csv").write_bytes(b"text\n" + b"a" * (200 << 10) + b"\nfine\n")
    (root / "deep.jsonl").write_bytes(ok + b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n" + ok)
    with (root / "long.jsonl").open("wb") as f:
        f.write(ok + b'{"text": "' + b"x" * (50 << 20) + b'"}\n' + ok)
    return {
        "bomb.jsonl.gz": collections.Counter({"record too long": 1}),
        "wide.csv": collections.Counter({"record too long": 1, None: 1}),
        "deep.jsonl": collections.Counter({None: 2, "malformed JSON": 1}),
        "long.jsonl": collections.Counter({None: 2, "record too long": 1}),
    }


def test_hostile_inputs_end_as_error_rows_in_bounded_memory(worker, tmp_path):
    expected = hostile_corpus(tmp_path / "corpus")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    manifest, rows = run_in_process(
        worker, tmp_path / "corpus", tmp_path / "out", split_bytes=32 << 20, max_record_bytes=4 << 20
    )
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert rows_by_file(rows) == expected
    assert_reconciles(manifest, rows)
    # A reader that held the 1 GiB bomb or the 50 MiB line whole would grow by that much.
    assert grown_mib < 40, f"peak RSS grew by {grown_mib:.0f} MiB"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: (d / "sub").mkdir() or os.symlink("..", d / "sub" / "loop"), id="loop-to-parent"),
        pytest.param(lambda d: os.symlink("self.txt", d / "self.txt"), id="self-link"),
        pytest.param(lambda d: os.symlink(d / "nowhere", d / "dangling.txt"), id="dangling"),
        pytest.param(lambda d: os.mkfifo(d / "pipe.txt"), id="fifo"),
    ],
)
def test_links_that_loop_or_lead_nowhere_are_refused_not_followed(tmp_path, make):
    (tmp_path / "ok.txt").write_text("a real document")
    make(tmp_path)
    with pytest.raises(CorpusError, match=r"not regular files: '.*'; links to directories, broken or looping"):
        scan(str(tmp_path))


def test_a_fifo_as_the_corpus_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(CorpusError, match="neither a file nor a directory"):
        scan(str(tmp_path / "pipe.jsonl"))


@contextlib.contextmanager
def unprivileged():
    """Act as `nobody` so file permissions apply: the tests run as root, which reads anything."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_an_unreadable_file_is_one_error_row_and_the_rest_runs(worker, tmp_path):
    # A world-readable place of our own: pytest's tmp_path is closed to other users.
    corpus = Path(tempfile.mkdtemp(prefix="rb-perm-"))
    out = Path(tempfile.mkdtemp(prefix="rb-perm-out-"))
    try:
        for path in (corpus, out):
            path.chmod(0o777)
        (corpus / "open.jsonl").write_text(json.dumps({"text": "readable"}) + "\n")
        (corpus / "secret.jsonl").write_text(json.dumps({"text": "locked"}) + "\n")
        (corpus / "secret.jsonl").chmod(0)
        with unprivileged():
            manifest, rows = run_in_process(worker, corpus, out)
        assert rows_by_file(rows) == {"open.jsonl": {None: 1}, "secret.jsonl": {"file unreadable": 1}}
        assert_reconciles(manifest, rows)
    finally:
        (corpus / "secret.jsonl").chmod(stat.S_IRUSR | stat.S_IWUSR)
        for path in (corpus, out):
            for child in sorted(path.rglob("*"), reverse=True):
                child.rmdir() if child.is_dir() else child.unlink()
            path.rmdir()


class _RefusingStore(http.server.BaseHTTPRequestHandler):
    """Object storage that answers for a presigned file (HEAD, a plain GET) but refuses to serve
    its bytes (a ranged GET, as a reader asks: 403), as when a signature expires mid-run."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()

    def do_GET(self) -> None:
        if self.headers.get("Range"):
            self.send_error(403, "AccessDenied")
            return
        self.do_HEAD()
        self.wfile.write(b"x" * 100)

    def log_message(self, *args: object) -> None:
        pass


def test_an_unreadable_presigned_file_is_an_error_row_that_does_not_show_its_signature(worker, tmp_path):
    signature = f"planted-sig-{secrets.token_hex(8)}"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingStore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/bucket/c.jsonl?X-Amz-Signature={signature}&x-id=GetObject"
        fs, files = scan(url)
        (shard,) = plan_shards(files, 1 << 20)
        # The worker is given the URL as a job gives it: it must mask it itself.
        job = dataclasses.replace(worker.config, corpus=url, output=str(tmp_path / "out"))
        worker.process(shard, job)
    finally:
        server.shutdown()
        server.server_close()
    (row,) = pq.read_table(tmp_path / "out" / "parts").to_pylist()
    assert row["error"].startswith("file unreadable: ") and "403" in row["error"], row["error"]
    assert signature not in row["error"] and "X-Amz-Signature=***" in row["error"], row["error"]
