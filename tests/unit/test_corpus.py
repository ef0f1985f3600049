import errno
import gzip
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yarl
from flakyfs import FlakyFS
from fsspec.exceptions import FSTimeoutError

from job.corpus import (
    CorpusError,
    Fields,
    FileChanged,
    ShortRead,
    Tally,
    check,
    file_format,
    plan_shards,
    read_shard,
    scan,
)

ROOT = Path(__file__).resolve().parents[2]


def checked(corpus, fields=None):
    fs, files = scan(str(corpus))
    check(fs, files, fields or Fields())
    return fs, files


def read_all(corpus, fields=None, split_bytes=1 << 20):
    fields = fields or Fields()
    fs, files = checked(corpus, fields)
    return [doc for shard in plan_shards(files, split_bytes) for doc in read_shard(fs, shard, fields)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_formats_are_recognised_with_and_without_gzip():
    assert file_format("a/b.jsonl") == ("jsonl", False)
    assert file_format("b.CSV.gz") == ("csv", True)
    assert file_format("x.tsv") == ("tsv", False)
    assert file_format("x.parquet") == ("parquet", False)
    assert file_format("x.parquet.gz") is None
    assert file_format("notes.md") is None


def test_every_format_reads_to_documents_with_stable_ids(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "one"}, {"text": "two"}])
    (tmp_path / "b.txt").write_text("a whole file")
    (tmp_path / "c.csv").write_text('text,label\n"hello, world",1\nsecond,2\n')
    (tmp_path / "d.tsv").write_text("text\tx\ntab separated\t1\n")
    pq.write_table(pa.table({"text": ["p0", "p1"]}), tmp_path / "e.parquet")
    with gzip.open(tmp_path / "f.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "zipped"}) + "\n")
    docs = read_all(tmp_path)
    assert [(d.id, d.text) for d in docs] == [
        ("a.jsonl@0", "one"),
        ("a.jsonl@16", "two"),
        ("b.txt", "a whole file"),
        ("c.csv:2", "hello, world"),
        ("c.csv:3", "second"),
        ("d.tsv:2", "tab separated"),
        ("e.parquet:0", "p0"),
        ("e.parquet:1", "p1"),
        ("f.jsonl.gz@0", "zipped"),
    ]
    assert all(d.error is None for d in docs)


def test_id_field_is_used_and_source_stays_unique(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": 7, "body": "x"}, {"id": 7, "body": "y"}])
    docs = read_all(tmp_path, Fields(text="body", id="id"))
    assert [d.id for d in docs] == ["7", "7"]
    assert [d.source for d in docs] == ["a.jsonl@0", "a.jsonl@23"]


def test_bad_records_become_error_rows_and_nothing_is_dropped(tmp_path):
    lines = [
        json.dumps({"text": "fine"}).encode(),
        b"{not json",
        json.dumps({"other": "no text"}).encode(),
        json.dumps({"text": "   "}).encode(),
        json.dumps({"text": 5}).encode(),
        b'{"text": "bad \xff byte"}',
        json.dumps(["not", "an", "object"]).encode(),
    ]
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n\n")
    docs = read_all(tmp_path)
    assert len(docs) == len(lines)
    assert docs[0].error is None
    errors = [d.error for d in docs[1:]]
    assert errors[0].startswith("malformed JSON")
    assert errors[1] == "no text field 'text'"
    assert errors[2] == "empty document"
    assert errors[3] == "text field 'text' is int"
    assert errors[4].startswith("not valid UTF-8")
    assert errors[5] == "record is list, not an object"


def test_text_files_bom_binary_and_empty(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfwith bom\r\n")
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02")
    (tmp_path / "empty.txt").write_bytes(b"  \n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    docs = {d.id: d for d in read_all(tmp_path)}
    assert docs["bom.txt"].text == "with bom\r\n"
    assert docs["bin.txt"].error.startswith("binary content")
    assert docs["empty.txt"].error == "empty document"
    assert docs["latin1.txt"].error == "not valid UTF-8: byte 3 is b'\\xe9'"


def test_csv_row_with_undecodable_bytes_is_an_error_row_not_a_failed_file(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"text\ngood\nbad \xff\n")
    docs = read_all(tmp_path)
    assert [d.error for d in docs] == [None, "not valid UTF-8: character 4"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "corpus is empty"),
        (lambda p: (p / "notes.md").write_text("x"), "unknown corpus format"),
        (lambda p: (p / "a.jsonl").write_text("\n\n"), "holds no documents"),
        (lambda p: write_jsonl(p / "a.jsonl", [{"body": "x"}]), "has no field 'text'"),
        (lambda p: (p / "a.csv").write_text("body\nx\n"), "has no field 'text'"),
    ],
)
def test_unusable_corpora_are_refused_with_a_reason(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(CorpusError, match=message):
        checked(tmp_path)


def test_missing_corpus_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="corpus not found: .*nope"):
        checked(tmp_path / "nope")


def test_hidden_and_marker_files_are_ignored(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".DS_Store").write_bytes(b"\x00")
    assert [d.id for d in read_all(tmp_path)] == ["a.jsonl@0"]


def test_shards_are_deterministic_cover_every_record_once_and_split_big_files(tmp_path):
    write_jsonl(tmp_path / "big.jsonl", [{"text": f"doc {i}"} for i in range(25)])
    for i in range(3):
        (tmp_path / f"t{i}.txt").write_text(f"text {i}")
    fs, files = checked(tmp_path)
    shards = plan_shards(files, 100)
    assert len(shards) == 5 and len({s.id for s in shards}) == 5
    assert [s.id for s in plan_shards(files, 100)] == [s.id for s in shards]
    sources = [d.source for s in shards for d in read_shard(fs, s, Fields())]
    assert len(sources) == len(set(sources)) == 28
    assert [s.id for s in plan_shards(files, 50)] != [s.id for s in shards]


@pytest.mark.parametrize("split", [1, 7, 16, 17, 18, 64, 1000])
def test_byte_ranges_own_the_records_that_start_in_them(tmp_path, split):
    """Hadoop's rule: however the file is cut, every record is read once, by one piece."""
    records = [{"text": "x" * (i % 23) + f"doc {i}"} for i in range(60)]
    body = "".join(json.dumps(r) + "\n" + ("\n" if i % 7 == 0 else "") for i, r in enumerate(records))
    (tmp_path / "a.jsonl").write_text(body)
    fs, files = checked(tmp_path)
    shards = plan_shards(files, split)
    docs = [d for s in shards for d in read_shard(fs, s, Fields())]
    assert [d.text for d in docs] == [r["text"] for r in records]
    offsets = [int(d.source.split("@")[1]) for d in docs]
    assert all(body[o - 1] == "\n" for o in offsets[1:]) and offsets[0] == 0


def test_each_byte_is_read_about_once(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"document number {i} " * (i % 9 + 1)} for i in range(5000)])
    fs, files = checked(tmp_path)
    tally = Tally()
    docs = [d for s in plan_shards(files, 16 << 10) for d in read_shard(fs, s, Fields(), tally=tally)]
    assert len(docs) == 5000
    assert 1.0 <= tally.bytes_read / files[0].size <= 1.05


def test_line_offsets_hold_when_a_line_ends_within_the_first_bytes(tmp_path):
    # The reader looks at two bytes first for a UTF-16 BOM; a line may end inside them.
    (tmp_path / "x.jsonl").write_bytes(b'\n{"text": "a"}\n{"text": "b"}')
    assert [(d.source, d.text) for d in read_all(tmp_path)] == [("x.jsonl@1", "a"), ("x.jsonl@15", "b")]


def test_parquet_is_split_by_row_group_from_its_footer(tmp_path):
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(1000)]}), tmp_path / "a.parquet", row_group_size=300)
    fs, files = checked(tmp_path)
    assert [rows for rows, _ in files[0].row_groups] == [300, 300, 300, 100]
    shards = plan_shards(files, 1)
    assert len(shards) == 4
    docs = [d for s in shards for d in read_shard(fs, s, Fields())]
    assert [d.source for d in docs] == [f"a.parquet:{i}" for i in range(1000)]
    assert [d.text for d in docs] == [f"row {i}" for i in range(1000)]


# --- prompt templates (--prompt-template, for generate) ---------------------------------------


def test_a_prompt_template_is_filled_from_each_records_fields_in_every_format(tmp_path):
    rows = [{"title": "First", "body": "one", "n": 1}, {"title": "Second", "body": "two", "n": 2}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.csv").write_text("title,body,n\n" + "".join(f"{r['title']},{r['body']},{r['n']}\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    (tmp_path / "d.txt").write_text("a whole file")
    fields = Fields(text="body", template="{n}. {title}: {text}")
    docs = {d.source: (d.text, d.error) for d in read_all(tmp_path, fields)}
    for source in ("a.jsonl@0", "b.csv:2", "c.parquet:0"):
        assert docs[source] == ("1. First: one", None), source
    # A .txt file is its text field alone: a template naming other fields gets an error row.
    assert docs["d.txt"] == (None, "no field 'n' (the prompt template names it)")
    only_text = {d.source: d.text for d in read_all(tmp_path / "d.txt", Fields(template="Summarise: {text}"))}
    assert only_text == {"d.txt": "Summarise: a whole file"}


def test_a_record_without_a_templates_field_is_an_error_row_and_a_sample_without_it_is_refused(tmp_path):
    corpus = tmp_path / "a.jsonl"
    corpus.write_text(json.dumps({"title": "T", "text": "x"}) + "\n" + json.dumps({"text": "y"}) + "\n")
    docs = read_all(corpus, Fields(template="{title}"))
    assert [(d.text, d.error) for d in docs] == [("T", None), (None, "no field 'title' (the prompt template names it)")]
    with pytest.raises(CorpusError, match="has no field 'titel' .*choose one with --prompt-template"):
        read_all(corpus, Fields(template="{titel}: {text}"))


def _http_error(status: int) -> aiohttp.ClientResponseError:
    url = yarl.URL("http://127.0.0.1/bucket/a.jsonl")
    return aiohttp.ClientResponseError(aiohttp.RequestInfo(url, "GET", {}, url), (), status=status, message="x")


TRANSIENT = {
    "timeout": TimeoutError("read timed out"),
    "fsspec-timeout": FSTimeoutError(),
    "connection-reset": ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    "s3fs-eio": OSError(errno.EIO, "Input/output error"),
    "aiohttp-client-os": aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
    "aiohttp-payload": aiohttp.ClientPayloadError("Response payload is not completed"),
    "server-disconnected": aiohttp.ServerDisconnectedError(),
    "http-408": _http_error(408),
    "http-429": _http_error(429),
    "http-500": _http_error(500),
    "http-503": _http_error(503),
}


@pytest.mark.parametrize("error", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_a_stream_that_fails_mid_file_with_a_transient_error_fails_the_piece_and_its_retry_reads_it_all(
    tmp_path, error
):
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"document {i}"} for i in range(1000)])
    _, files = checked(tmp_path)
    (shard,) = plan_shards(files, 1 << 20)
    fs = FlakyFS(fails=1, after=5, error=error)
    read = []
    with pytest.raises(type(error)):
        read.extend(read_shard(fs, shard, Fields()))
    assert len(read) == 5 and all(d.error is None for d in read)  # no `file unreadable` row
    tally = Tally()
    again = list(read_shard(fs, shard, Fields(), tally=tally))  # the shard's retry
    assert [d.text for d in again] == [f"document {i}" for i in range(1000)]
    assert all(d.error is None for d in again)


@pytest.mark.parametrize(
    "error",
    [FileNotFoundError(errno.ENOENT, "gone"), PermissionError(errno.EACCES, "denied"), _http_error(403)],
    ids=["not-found", "permission", "http-403"],
)
def test_a_lasting_read_error_ends_the_file_in_one_error_row(tmp_path, error):
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"document {i}"} for i in range(1000)])
    _, files = checked(tmp_path)
    (shard,) = plan_shards(files, 1 << 20)
    docs = list(read_shard(FlakyFS(fails=1, after=5, error=error), shard, Fields()))
    assert [d.error for d in docs[:5]] == [None] * 5 and len(docs) == 6
    assert docs[5].error.startswith(f"file unreadable: {type(error).__name__}")


def test_a_damaged_gzip_that_changed_since_the_plan_fails_the_shard_and_an_unchanged_one_is_an_error_row(tmp_path):
    whole = gzip.compress(b"".join(json.dumps({"text": f"t{i}"}).encode() + b"\n" for i in range(1000)))
    (tmp_path / "a.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    fs, files = checked(tmp_path)
    (shard,) = plan_shards(files, 1 << 20)
    assert read_shard_errors(fs, shard) == ["file unreadable"]
    (tmp_path / "a.jsonl.gz").write_bytes(whole[: len(whole) // 2 + 10])
    with pytest.raises(FileChanged, match=r"'a\.jsonl\.gz' changed while the job read it \(EOFError"):
        list(read_shard(fs, shard, Fields()))


def read_shard_errors(fs, shard):
    return [d.error.split(":")[0] for d in read_shard(fs, shard, Fields()) if d.error]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "txt"])
def test_a_stream_that_ends_before_its_planned_bytes_fails_the_piece(tmp_path, fmt):
    body = "".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(1000)).encode()
    if fmt == "csv":
        body = b"text\n" + b"".join(f"document {i}\n".encode() for i in range(1000))
    path = tmp_path / f"a.{fmt}"
    path.write_bytes(body)
    fs, files = checked(tmp_path)
    (shard,) = plan_shards(files, 1 << 30)
    with path.open("r+b") as f:  # cut while the job runs: the stream ends early, with no error
        f.truncate(len(body) // 2)
    cut = len(body) // 2
    with pytest.raises(ShortRead, match=rf"'a\.{fmt}' \(from 0\) ended after {cut} of the {len(body)} bytes"):
        list(read_shard(fs, shard, Fields()))


def test_a_parquet_row_group_streams_in_record_batches(tmp_path):
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(5000)]}), tmp_path / "a.parquet")
    fs, files = checked(tmp_path)
    (shard,) = plan_shards(files, 1 << 20)
    assert [d.text for d in read_shard(fs, shard, Fields())] == [f"row {i}" for i in range(5000)]


WRITE_BIG_GROUP = """
import sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
rows = 300_000
numbers = pc.utf8_lpad(pc.cast(pa.array(range(rows)), pa.string()), 9, "0")
text = pc.binary_join_element_wise(numbers, "the quick brown fox jumps over the lazy dog " * 46, "")
pq.write_table(pa.table({"text": text}), sys.argv[1], row_group_size=rows, use_dictionary=False)
"""
# The peak is VmHWM, this process's own: ru_maxrss would carry over the pytest process's peak
# from before the exec.
READ_PIECE = """
import re, sys
from pathlib import Path
from job.corpus import Fields, plan_shards, read_shard, scan
fs, files = scan(sys.argv[1])
(shard,) = plan_shards(files, 1 << 40)
count = sum(1 for doc in read_shard(fs, shard, Fields()) if doc.error is None and len(doc.text) > 2000)
peak_kib = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(count, len(files[0].row_groups), peak_kib >> 10)
"""


def test_one_row_group_of_300k_2kb_records_is_read_in_bounded_memory(tmp_path):
    """600 MB of text in one row group (pandas writes one per file): streamed in record batches,
    the reader's peak stays far below it, where reading the group whole would hold it twice over."""
    path = tmp_path / "big.parquet"
    subprocess.run([sys.executable, "-c", WRITE_BIG_GROUP, path], check=True, timeout=600)
    done = subprocess.run(
        [sys.executable, "-c", READ_PIECE, path], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count, groups, peak_mib = map(int, done.stdout.split())
    assert (count, groups) == (300_000, 1)
    assert peak_mib < 600, f"reading one row group peaked at {peak_mib} MiB"
