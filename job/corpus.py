"""Corpus readers, stable document ids and a plan of shards made from metadata only.

A corpus is a file or a directory tree (a local path or an fsspec URI). Every record of it
becomes exactly one `Document`: its text, or the reason it has none. Nothing here raises for
one bad document; `CorpusError` is only for a corpus that cannot be used at all.

The plan reads no record: it uses the file list, sizes and Parquet footers. Workers read, and
each byte once:
- uncompressed JSONL is cut into byte ranges; a piece owns the records that *start* inside its
  range (Hadoop's line-reader rule), so it reads on past its end to finish its last record and
  skips the partial line at its start, which the piece before owns;
- Parquet is cut by row group;
- gzip cannot be entered midway: a .gz file is one piece (many smaller files parallelise);
- CSV/TSV is one piece per file: a quoted field may hold newlines, so a byte offset cannot tell
  where a record starts;
- .txt is one document per file.

Document `source` ids, stable across reruns and unique: `rel@offset` for JSONL (the byte offset
where the record starts, in the decompressed stream for .gz), `rel:line` for CSV/TSV (the line
the record starts on, the header being line 1), `rel:row` for Parquet (row index in the file,
from 0), and `rel` for .txt.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import functools
import gzip
import hashlib
import io
import json
import string
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO, cast

import fsspec

from job import listing, urls

FORMATS = {
    ".txt": "txt",
    ".text": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
# Parquet compresses internally; gzip around it is not a thing anyone ships.
GZIP_FORMATS = {"txt", "jsonl", "csv", "tsv"}
# Windows "Unicode" text is UTF-16 with a BOM: the BOM says what it is, so it is decoded, not refused.
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# What reading a damaged file raises: I/O and permission errors, a gzip cut short (EOFError),
# corrupt deflate data (zlib.error), a file that is not what its name says (ValueError).
READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)
# Of those, what a retry cannot change, so the file ends in an error row: it is not there or may
# not be read, or its bytes are damaged (a gzip cut short or not gzip at all, a Parquet file that
# is not Parquet). Everything else a read raises (a timeout, a reset connection, s3fs's EIO once
# its own retries on 503 SlowDown are spent) fails the shard, which is retried whole.
ABSENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
DAMAGED = (EOFError, zlib.error, gzip.BadGzipFile, ValueError)
# HTTP statuses a retry can change: a request timeout and too many requests (and every 5xx).
RETRIED_STATUS = (408, 429)
# Rows per Parquet record batch: a row group (pandas writes one per file, Spark 128 MB+) streams
# through in batches of this many rows, never whole.
PARQUET_BATCH_ROWS = 1024
# Bytes a Parquet column chunk is read in: without it pyarrow reads a whole column chunk at once.
PARQUET_BUFFER_BYTES = 1 << 20
# The longest record a worker reads. A longer one is an error row and is skipped in bounded
# reads, so no input (a gzip bomb, a file with no newline) can exhaust a worker's memory. It is
# 16 MiB rather than a few: a whole book as one .txt file is a real document.
MAX_RECORD_BYTES = 16 << 20
# Bytes per shard (the resume unit): a corpus gets about SHARDS_PER_CORPUS shards, so many more
# than workers (the last shards decide when a run ends), each between these bounds. The floor
# is low enough that a small corpus still spreads over a machine's workers (at 256 KiB, 600
# short documents were one shard, and one of two CPU workers did all of it) and high enough
# that a shard's fixed cost (a task, a Parquet part) stays small next to its work.
SPLIT_BYTES_MAX = 32 << 20
SPLIT_BYTES_MIN = 16 << 10
SHARDS_PER_CORPUS = 64
# The pre-submit check reads at most this much of at most this many files.
SAMPLE_FILES = 3
SAMPLE_BYTES = 64 << 10
# Footers of this many Parquet files are read at once: each is a round trip on object storage.
FOOTER_THREADS = 16
# Python's csv refuses a field over 128 KiB by default; that limit stays: a cell that large is
# almost always an unclosed quote swallowing the rest of the file. It becomes an error row.
CSV_FIELD_LIMIT = 128 << 10
SKIP_CHUNK = 1 << 20


class CorpusError(Exception):
    """The corpus as a whole cannot be used: the submit is refused with this message."""


class FileChanged(OSError):
    """A file's bytes are damaged, but its size or version is not what the plan saw: it changed
    while the job read it, so its error is no fact about the file the plan has. The shard fails."""


@dataclass(frozen=True)
class Fields:
    text: str = "text"
    id: str | None = None
    # --prompt-template: the document's text is this str.format template filled from its record,
    # `{text}` with the text field's value and any other `{name}` with the field `name`.
    template: str | None = None

    def record_fields(self) -> dict[str, str]:
        """Template name -> the record field that fills it; without a template, the text alone."""
        names = template_names(self.template) if self.template is not None else ("text",)
        return {name: self.text if name == "text" else name for name in names}


@functools.cache
def template_names(template: str) -> tuple[str, ...]:
    """The names a prompt template fills, once each, in order; ValueError for one that cannot work:
    a malformed template, a positional `{}` or `{0}`, or attribute and index access (`{a.b}`,
    `{a[0]}`), which would reach into a record's values."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"prompt template {template!r} is malformed ({exc}); write a literal brace as {{{{ or }}}}"
        ) from None
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ValueError(
                f"prompt template {template!r} has a positional field {{{name}}}; name a field, e.g. {{text}}"
            )
        if "." in name or "[" in name:
            raise ValueError(f"prompt template {template!r}: {{{name}}} reaches into a value; name a whole field")
        if spec and "{" in spec:
            raise ValueError(f"prompt template {template!r}: nested fields in {{{name}:{spec}}} are not supported")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"prompt template {template!r} names no field; include {{text}} or another field")
    return tuple(names)


@dataclass(frozen=True)
class Document:
    id: str
    source: str  # unique even where given ids repeat: see the module docstring
    text: str | None
    error: str | None = None


@dataclass(frozen=True)
class CorpusFile:
    path: str  # as the filesystem names it
    rel: str  # relative to the corpus root: the stable part of document ids
    fmt: str
    gzip: bool
    size: int = 0
    # What says the file changed besides its size: an etag where the store has one, else mtime.
    version: str | None = None
    # Parquet: (rows, bytes) per row group, from the footer.
    row_groups: tuple[tuple[int, int], ...] = ()
    columns: tuple[str, ...] = ()

    @property
    def splittable(self) -> bool:
        return self.fmt == "jsonl" and not self.gzip


@dataclass(frozen=True)
class Piece:
    """Part of one file: bytes [start, stop) of a JSONL file, row groups [start, stop) of a
    Parquet file, or the whole of any other file (start 0, stop its size)."""

    file: CorpusFile
    start: int
    stop: int

    @property
    def bytes(self) -> int:
        if self.file.fmt == "parquet":
            return sum(size for _, size in self.file.row_groups[self.start : self.stop])
        return self.stop - self.start


@dataclass(frozen=True)
class Shard:
    index: int
    pieces: tuple[Piece, ...]

    @property
    def id(self) -> str:
        key = json.dumps([(p.file.rel, p.start, p.stop) for p in self.pieces])
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.pieces)


@dataclass
class Tally:
    """What a reader read: its bytes, for the read amplification the manifest reports."""

    bytes_read: int = 0


class ShortRead(OSError):
    """A piece's stream ended, with no error, before the bytes (Parquet: rows) the plan has for
    it: a connection closed early, or a file cut while it was read. The shard fails, so its part
    is never written short; it is retried, and a rerun redoes it if every retry came up short."""


def _reached(piece: Piece, read: int, planned: int, unit: str = "bytes") -> None:
    """A piece's reader came to its end having read `read` of its `planned` bytes (or rows)."""
    if read < planned:
        raise ShortRead(
            errno.EIO,
            f"{piece.file.rel!r} (from {piece.start}) ended after {read} of the {planned} {unit} planned for it",
        )


def file_format(name: str) -> tuple[str, bool] | None:
    """(format, gzipped) from a file name, or None for a format raybake cannot read."""
    lower = name.lower()
    gz = lower.endswith(".gz")
    if gz:
        lower = lower[: -len(".gz")]
    for suffix, fmt in FORMATS.items():
        if lower.endswith(suffix) and (not gz or fmt in GZIP_FORMATS):
            return fmt, gz
    return None


def list_files(corpus: str) -> tuple[fsspec.AbstractFileSystem, list[CorpusFile]]:
    """The readable files of a corpus, sorted, with sizes, or a CorpusError that says what is wrong.

    One listing call: sizes and versions come with it, so no file is opened here.
    """
    try:
        fs, root = fsspec.core.url_to_fs(corpus, **urls.fs_options(corpus))
    except (ImportError, ValueError) as exc:
        raise CorpusError(f"cannot open corpus {corpus!r}: {exc}") from exc
    if not fs.exists(root):
        raise CorpusError(f"corpus not found: {corpus!r}")
    if fs.isdir(root):
        root = root.rstrip("/")
        # find() does not follow links to directories, so a symlink loop cannot make it spin;
        # such links, broken links and pipes come back as type "other" and are refused below.
        found = fs.find(root, withdirs=False, detail=True)
        rels = [(p, p[len(root) + 1 :], info) for p, info in sorted(found.items())]
        rels = [r for r in rels if listing.is_document(r[1])]
    elif fs.isfile(root):
        rels = [(root, urls.file_name(root), fs.info(root))]
    else:
        raise CorpusError(f"corpus {corpus!r} is neither a file nor a directory (a pipe or a device?)")
    odd = [rel for _, rel, info in rels if info["type"] != "file"]
    if odd:
        raise CorpusError(
            f"{len(odd)} corpus entr{'y is' if len(odd) == 1 else 'ies are'} not regular files: {_some(odd)}; "
            "links to directories, broken or looping links and pipes are not followed: "
            "remove them, or point --corpus at what they link to"
        )
    files, unknown = [], []
    for path, rel, info in rels:
        kind = file_format(rel)
        if kind is None:
            unknown.append(rel)
        else:
            size = int(info.get("size") or 0)
            files.append(
                CorpusFile(path=path, rel=rel, fmt=kind[0], gzip=kind[1], size=size, version=listing.version(info))
            )
    if unknown:
        raise CorpusError(
            f"unknown corpus format for {len(unknown)} file(s): {_some(unknown)}; "
            f"raybake reads {', '.join(sorted(FORMATS))} (optionally .gz, not parquet)"
        )
    if not files:
        raise CorpusError(f"corpus is empty: no files under {corpus!r}")
    return fs, files


def _some(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")


def _footer(fs: fsspec.AbstractFileSystem, f: CorpusFile) -> CorpusFile:
    import dataclasses

    import pyarrow.parquet as pq  # here: the client's check of a JSONL corpus never needs pyarrow

    try:
        with fs.open(f.path, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
            # Bytes on disk (compressed), comparable with the file sizes progress and amplification use.
            groups = tuple(
                (group.num_rows, sum(group.column(c).total_compressed_size for c in range(group.num_columns)))
                for group in map(meta.row_group, range(meta.num_row_groups))
            )
            names = tuple(meta.schema.to_arrow_schema().names)
    except READ_ERRORS:
        # An unreadable footer: one whole-file piece, whose reader makes the error row.
        return f
    return dataclasses.replace(f, row_groups=groups, columns=names)


def read_footers(fs: fsspec.AbstractFileSystem, files: list[CorpusFile]) -> list[CorpusFile]:
    """Parquet files with their row groups from their footers. On object storage each is a small
    ranged read whose round trip dominates, so they are read concurrently; on a local or
    mounted disk one thread is fastest (10,000 footers: 1.4 s, against 5.5 s on 16 threads that
    only contend for the GIL)."""
    todo = [i for i, f in enumerate(files) if f.fmt == "parquet"]
    if not todo:
        return files
    files = list(files)

    def footer(i: int) -> CorpusFile:
        return _footer(fs, files[i])

    if "file" in fs.protocol:
        read = list(map(footer, todo))
    else:
        with ThreadPoolExecutor(max_workers=min(FOOTER_THREADS, len(todo))) as pool:
            read = list(pool.map(footer, todo))
    for i, f in zip(todo, read, strict=True):
        files[i] = f
    return files


def scan(corpus: str) -> tuple[fsspec.AbstractFileSystem, list[CorpusFile]]:
    """List the corpus with its sizes and Parquet footers: the metadata a plan is made from."""
    fs, files = list_files(corpus)
    return fs, read_footers(fs, files)


def auto_split_bytes(files: list[CorpusFile]) -> int:
    """A function of the corpus alone, so a rerun (even on another cluster) plans the same shards."""
    total = sum(f.size for f in files)
    return min(SPLIT_BYTES_MAX, max(SPLIT_BYTES_MIN, -(-total // SHARDS_PER_CORPUS)))


def _pieces(f: CorpusFile, split_bytes: int) -> Iterator[Piece]:
    if f.splittable and f.size > split_bytes:
        for start in range(0, f.size, split_bytes):
            yield Piece(f, start, min(f.size, start + split_bytes))
    elif f.fmt == "parquet" and f.row_groups:
        start, size = 0, 0
        for group, (_, group_bytes) in enumerate(f.row_groups):
            if group > start and size + group_bytes > split_bytes:
                yield Piece(f, start, group)
                start, size = group, 0
            size += group_bytes
        yield Piece(f, start, len(f.row_groups))
    else:
        yield Piece(f, 0, f.size)


def plan_shards(files: list[CorpusFile], split_bytes: int) -> list[Shard]:
    """Cut files, in order, into shards of about `split_bytes`; small files share a shard.

    The plan depends only on the file list, sizes, footers and split_bytes, so a rerun over the
    same corpus gets the same shard ids and skips the finished ones.
    """
    if split_bytes < 1:
        raise ValueError(f"split_bytes must be >= 1, got {split_bytes!r}")
    shards: list[Shard] = []
    pieces: list[Piece] = []
    size = 0
    for f in files:
        for piece in _pieces(f, split_bytes):
            if pieces and size + piece.bytes > split_bytes:
                shards.append(Shard(len(shards), tuple(pieces)))
                pieces, size = [], 0
            pieces.append(piece)
            size += piece.bytes
    if pieces:
        shards.append(Shard(len(shards), tuple(pieces)))
    return shards


def check(fs: fsspec.AbstractFileSystem, files: list[CorpusFile], fields: Fields) -> None:
    """Refuse what cannot work from the first records of a few files (SAMPLE_BYTES each):
    a wrong --text-field or --id-field, or a corpus with no document. Never reads a whole corpus."""
    if all(f.size == 0 for f in files):
        raise CorpusError(f"corpus is empty: every file of it is empty ({_some([f.rel for f in files])})")
    sampled_all, found = len(files) <= SAMPLE_FILES, False
    for f in files[:SAMPLE_FILES]:
        names, records, whole = _first_names(fs, f)
        found = found or records
        sampled_all = sampled_all and whole
        named = [(c, "--text-field" if n == "text" else "--prompt-template") for n, c in fields.record_fields().items()]
        for wanted, flag in (*named, (fields.id, "--id-field")):
            if names is not None and wanted is not None and wanted not in names:
                raise CorpusError(
                    f"{f.rel!r} has no field {wanted!r} (it has {', '.join(map(repr, names[:10]))}); "
                    f"choose one with {flag}"
                )
    if sampled_all and not found:
        raise CorpusError(f"corpus is empty: it holds no documents ({_some([f.rel for f in files])})")


def _first_names(fs: fsspec.AbstractFileSystem, f: CorpusFile) -> tuple[list[str] | None, bool, bool]:
    """(field names of the first record, or None where unknown; any record seen; file read whole)."""
    if f.fmt == "txt":
        return None, True, True
    if f.fmt == "parquet":
        row_count = sum(r for r, _ in f.row_groups)
        return (list(f.columns) if f.row_groups else None), row_count > 0, True
    try:
        with _open(fs, f) as (handle, _):
            head = handle.read(SAMPLE_BYTES + 1)
    except READ_ERRORS:
        return None, True, True  # the worker turns it into an error row
    whole = len(head) <= SAMPLE_BYTES
    head = head[:SAMPLE_BYTES]
    text = head.decode("utf-16" if head.startswith(UTF16_BOMS) else "utf-8-sig", errors="replace")
    lines = text.splitlines()
    if not whole and lines:
        lines.pop()  # may be cut short
    if f.fmt in ("csv", "tsv"):
        try:
            rows = [
                r for r in csv.reader(lines, delimiter="\t" if f.fmt == "tsv" else ",") if any(c.strip() for c in r)
            ]
        except csv.Error:
            return None, True, whole
        return (rows[0] if rows else None), len(rows) > 1, whole
    records = [ln for ln in lines if ln.strip()]
    for line in records:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            return list(record), True, whole
    return None, bool(records), whole


@contextlib.contextmanager
def _open(fs: fsspec.AbstractFileSystem, f: CorpusFile) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(the file's bytes, decompressed; the file itself): where the file is when its reader
    ends says whether the stream gave all the bytes the plan has for it."""
    with fs.open(f.path, "rb") as raw:
        if f.gzip:
            # gzip decompresses as it is read, a buffer at a time: never a whole file in memory.
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield cast(BinaryIO, unzipped), raw
        elif isinstance(raw, fsspec.spec.AbstractBufferedFile):
            # An object store's file (s3fs, http) reads a line whole, with no limit: a BufferedReader
            # over it gives the bounded readline(limit) that keeps a huge line out of memory.
            yield cast(BinaryIO, io.BufferedReader(raw)), raw
        else:
            yield raw, raw


def decode(raw: bytes) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason). UTF-8 (a BOM is dropped) or UTF-16 with its BOM.

    Other encodings (latin-1, cp1252) are refused per document rather than guessed: a wrong guess
    would give results for text the user never wrote. CRLF is left to the tokenizer.
    """
    if raw.startswith(UTF16_BOMS):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            return None, f"not valid UTF-16: byte {exc.start}"
    elif b"\x00" in raw:
        return None, "binary content (NUL bytes), not text"
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return None, f"not valid UTF-8: byte {exc.start} is {raw[exc.start : exc.start + 1]!r}"
    if "\x00" in text:
        return None, "binary content (NUL bytes), not text"
    if not text.strip():
        return None, "empty document"
    return text, None


def _too_long(limit: int) -> str:
    return f"record too long: over {limit} bytes (--max-record-bytes)"


def _skip_line(handle: BinaryIO) -> int:
    """Read past the end of the current line in bounded steps; the bytes skipped."""
    skipped = 0
    while True:
        chunk = handle.readline(SKIP_CHUNK)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def _byte_lines(
    handle: BinaryIO, *, start: int, stop: int | None, limit: int, tally: Tally
) -> Iterator[tuple[int, bytes | None]]:
    """(offset, line) for each line that starts in [start, stop); None for a line over `limit`.

    A piece that does not start the file skips the partial line it starts in: the piece before
    owns it, as it owns every record that starts inside its range. Reads are bounded by `limit`.
    """
    pos = start
    if start > 0:
        handle.seek(start - 1)
        pos = start - 1 + _skip_line(handle)
        tally.bytes_read += pos - start + 1
    while stop is None or pos < stop:
        line = handle.readline(limit + 1)
        if not line:
            return
        size = len(line)
        if size > limit and not line.endswith(b"\n"):
            size += _skip_line(handle)
            tally.bytes_read += size
            yield pos, None
        else:
            tally.bytes_read += size
            yield pos, line
        pos += size


def _utf16_lines(handle: BinaryIO, *, limit: int, tally: Tally) -> Iterator[tuple[int, bytes | None]]:
    """A UTF-16 file's lines as UTF-8 (offsets in the UTF-8 stream): decoded as it streams, so
    lines split on its newlines, not on every 0x0A byte of its two-byte characters."""
    decoder = codecs.getincrementaldecoder("utf-16")(errors="surrogateescape")
    pending, pos, dropping = "", 0, False
    for chunk in iter(lambda: handle.read(1 << 16), b""):
        tally.bytes_read += len(chunk)
        *lines, pending = (pending + decoder.decode(chunk)).split("\n")
        for line in lines:
            raw = (line + "\n").encode("utf-8", errors="surrogateescape")
            yield pos, (None if dropping or len(raw) > limit else raw)
            pos, dropping = pos + len(raw), False
        if len(pending) > limit:
            # Only its length matters now: keep none of it.
            pending, dropping = "", True
    pending += decoder.decode(b"", final=True)
    if pending or dropping:
        yield pos, None if dropping else pending.encode("utf-8", errors="surrogateescape")


def _from_fields(record: object, source: str, fields: Fields) -> Document:
    if not isinstance(record, dict):
        return Document(source, source, None, f"record is {type(record).__name__}, not an object")
    doc_id = source
    if fields.id is not None:
        if record.get(fields.id) is None:
            return Document(source, source, None, f"no id field {fields.id!r}")
        doc_id = str(record[fields.id])
    values = {}
    for name, field in fields.record_fields().items():
        value = record.get(field)
        if value is None:
            what = "text field" if name == "text" else "field"
            return Document(
                doc_id,
                source,
                None,
                f"no {what} {field!r}" + ("" if fields.template is None else " (the prompt template names it)"),
            )
        if name == "text" and not isinstance(value, str):
            return Document(doc_id, source, None, f"text field {field!r} is {type(value).__name__}")
        values[name] = value
    return _document(doc_id, source, values, fields)


def _document(doc_id: str, source: str, values: dict[str, object], fields: Fields) -> Document:
    """The document whose text is its text field's value, or its prompt template filled in."""
    text = values.get("text")
    if isinstance(text, str) and not text.strip():
        return Document(doc_id, source, None, "empty document")
    if fields.template is not None:
        try:
            text = fields.template.format_map(values)
        except (ValueError, TypeError) as exc:  # a format spec the value cannot take: {n:.2f} of a string
            return Document(doc_id, source, None, f"prompt template: {exc}")
    assert isinstance(text, str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # surrogates: undecodable bytes kept by the CSV reader
        return Document(doc_id, source, None, f"not valid UTF-8: character {exc.start}")
    if not text.strip():
        return Document(doc_id, source, None, "empty document")
    return Document(doc_id, source, text)


def _read_jsonl(
    fs: fsspec.AbstractFileSystem, piece: Piece, fields: Fields, limit: int, tally: Tally
) -> Iterator[Document]:
    f = piece.file
    with _open(fs, f) as (handle, raw):
        utf16 = handle.read(2) in UTF16_BOMS
        if utf16 and piece.start > 0:
            return  # the first piece reads a UTF-16 file whole: its bytes cannot be cut at 0x0A
        handle.seek(0)
        if utf16:
            lines = _utf16_lines(handle, limit=limit, tally=tally)
        else:
            stop = None if f.gzip else piece.stop
            lines = _byte_lines(handle, start=piece.start, stop=stop, limit=limit, tally=tally)
        for offset, line in lines:
            source = f"{f.rel}@{offset}"
            if line is None:
                yield Document(source, source, None, _too_long(limit))
                continue
            if not line.strip():
                continue  # blank lines are not records
            text, error = decode(line.rstrip(b"\r\n"))
            if text is None:  # decode gives a text or the reason why not
                yield Document(source, source, None, error)
                continue
            try:
                record = json.loads(text)
            except ValueError as exc:
                yield Document(source, source, None, f"malformed JSON: {exc}")
                continue
            except RecursionError:
                yield Document(source, source, None, "malformed JSON: nested too deeply to parse")
                continue
            yield _from_fields(record, source, fields)
        _reached(piece, raw.tell(), f.size if utf16 or f.gzip else piece.stop)
    if f.gzip:
        tally.bytes_read = f.size  # what came off the disk is the compressed file, once


class _TextLines:
    """Lines of a text stream for csv.reader, each at most `limit` characters: a longer one is
    skipped in bounded reads and raised as _LineTooLong (csv.reader passes it through)."""

    def __init__(self, text: TextIO, limit: int) -> None:
        self.text, self.limit, self.line = text, limit, 0

    def __iter__(self) -> _TextLines:
        return self

    def __next__(self) -> str:
        line = self.text.readline(self.limit + 1)
        if not line:
            raise StopIteration
        self.line += 1
        if len(line) > self.limit and not line.endswith("\n"):
            while (rest := self.text.readline(SKIP_CHUNK)) and not rest.endswith("\n"):
                pass
            raise _LineTooLong
        return line


class _LineTooLong(Exception):
    pass


def _read_csv(
    fs: fsspec.AbstractFileSystem, piece: Piece, fields: Fields, limit: int, tally: Tally
) -> Iterator[Document]:
    f = piece.file
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with _open(fs, f) as (handle, raw):
        utf16 = handle.read(2) in UTF16_BOMS
        handle.seek(0)
        # surrogateescape keeps undecodable bytes visible per row instead of failing the file.
        text = io.TextIOWrapper(
            handle, encoding="utf-16" if utf16 else "utf-8-sig", errors="surrogateescape", newline=""
        )
        lines = _TextLines(text, limit)
        delimiter = "\t" if f.fmt == "tsv" else ","
        header: list[str] | None = None
        while True:
            reader = csv.reader(lines, delimiter=delimiter)
            first = lines.line + 1
            try:
                for row in reader:
                    if header is None:
                        header = row
                    elif any(cell.strip() for cell in row):
                        source = f"{f.rel}:{first}"
                        yield _from_fields(dict(zip(header, row, strict=False)), source, fields)
                    first = lines.line + 1
                break
            except _LineTooLong:
                source = f"{f.rel}:{first}"
                yield Document(source, source, None, _too_long(limit))
            except csv.Error as exc:
                source = f"{f.rel}:{first}"
                reason = "record too long" if "field larger" in str(exc) else "malformed CSV"
                yield Document(source, source, None, f"{reason}: {exc}")
        _reached(piece, raw.tell(), f.size)
    tally.bytes_read += f.size


def _read_parquet(
    fs: fsspec.AbstractFileSystem, piece: Piece, fields: Fields, limit: int, tally: Tally
) -> Iterator[Document]:
    f = piece.file
    import pyarrow.parquet as pq

    # A template's column that this file lacks is left out of the read: its rows are errors that say so.
    named = [c for c in fields.record_fields().values() if c == fields.text or c in f.columns]
    columns = named + ([fields.id] if fields.id and fields.id not in named else [])
    with fs.open(f.path, "rb") as handle:
        parquet = pq.ParquetFile(handle, buffer_size=PARQUET_BUFFER_BYTES)
        if not f.row_groups:  # the plan could not read the footer: it fails here, as an error row
            parquet.metadata  # noqa: B018
        row = sum(rows for rows, _ in f.row_groups[: piece.start])
        for group in range(piece.start, piece.stop):
            first = row
            # In record batches: a row group of any size streams through (pandas writes one per file).
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[group], columns=columns):
                for record in batch.to_pylist():
                    source = f"{f.rel}:{row}"
                    text = record.get(fields.text)
                    if isinstance(text, str) and len(text) > limit:
                        yield Document(source, source, None, _too_long(limit))
                    else:
                        yield _from_fields(record, source, fields)
                    row += 1
            tally.bytes_read += f.row_groups[group][1]
            _reached(piece, row - first, f.row_groups[group][0], "rows")


def _read_txt(
    fs: fsspec.AbstractFileSystem, piece: Piece, fields: Fields, limit: int, tally: Tally
) -> Iterator[Document]:
    rel = piece.file.rel
    with _open(fs, piece.file) as (handle, file):
        raw = handle.read(limit + 1)
        if len(raw) <= limit:
            _reached(piece, file.tell(), piece.file.size)
    tally.bytes_read += piece.file.size
    if len(raw) > limit:
        yield Document(rel, rel, None, _too_long(limit))
        return
    text, error = decode(raw)
    if text is None or fields.template is None:
        yield Document(rel, rel, text, error)
        return
    # The file is its record's text field; a template that names other fields gets error rows.
    yield _from_fields({fields.text: text}, rel, Fields(text=fields.text, template=fields.template))


READERS = {"txt": _read_txt, "jsonl": _read_jsonl, "csv": _read_csv, "tsv": _read_csv, "parquet": _read_parquet}


def read_piece(
    fs: fsspec.AbstractFileSystem,
    piece: Piece,
    fields: Fields,
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
    tally: Tally | None = None,
) -> Iterator[Document]:
    """The documents of a piece; a file that cannot be read, now or ever, ends in one error row
    saying so. A fault a retry may clear (a timeout, a reset connection, a 503) is raised: the
    shard fails and is retried whole, and no document of the piece is lost to it."""
    tally = tally if tally is not None else Tally()
    last = None
    try:
        for doc in READERS[piece.file.fmt](fs, piece, fields, max_record_bytes, tally):
            last = doc.source
            yield doc
    except Exception as exc:
        if not lasting(exc):
            raise
        if isinstance(exc, DAMAGED) and _changed(fs, piece.file):
            raise FileChanged(
                errno.ESTALE,
                f"{piece.file.rel!r} changed while the job read it ({type(exc).__name__}: {exc}); "
                "its results would mix two versions of it: run the job again into a new --output",
            ) from exc
        # Unique: after the last record read, or at the piece's start when none was.
        source = f"{last}+unreadable" if last else f"{piece.file.rel}@{piece.start}"
        # An fsspec or aiohttp error quotes the URL: a presigned one's signature is masked.
        yield Document(source, source, None, urls.shown(f"file unreadable: {type(exc).__name__}: {exc}"))


def lasting(exc: BaseException) -> bool:
    """Whether a read error says something about the file that a retry cannot change: it is not
    there, may not be read (an HTTP 4xx, e.g. a presigned URL that expired mid-run; not 408 or
    429), or its bytes are damaged. A timeout, a reset connection, EIO, a 5xx are not."""
    if isinstance(exc, FileChanged):
        return False
    status = getattr(exc, "status", None)  # aiohttp's ClientResponseError under fsspec's http
    if isinstance(status, int):
        return 400 <= status < 500 and status not in RETRIED_STATUS
    return isinstance(exc, ABSENT + DAMAGED)


def _changed(fs: fsspec.AbstractFileSystem, f: CorpusFile) -> bool:
    """Whether the file is no longer the one the plan listed (its size or version differ)."""
    try:
        info = fs.info(f.path)
    except Exception:  # noqa: BLE001 - gone, or not to be asked: it is not the file the plan saw
        return True
    return (int(info.get("size") or 0), listing.version(info)) != (f.size, f.version)


def read_shard(fs: fsspec.AbstractFileSystem, shard: Shard, fields: Fields, **reading: Any) -> Iterator[Document]:
    """The documents of the shard's pieces in order; `reading`: read_piece's options."""
    for piece in shard.pieces:
        yield from read_piece(fs, piece, fields, **reading)
