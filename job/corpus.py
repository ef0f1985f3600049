"""Corpus readers, stable document ids and deterministic shards.

A corpus is a file or a directory tree (a local path or an fsspec URI). Every record of it
becomes exactly one `Document`: its text, or the reason it has none. Nothing here raises for
one bad document; `CorpusError` is only for a corpus that cannot be read at all.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import pyarrow.parquet as pq

from job import urls

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


class CorpusError(Exception):
    """The corpus as a whole cannot be used: the submit is refused with this message."""


@dataclass(frozen=True)
class Fields:
    text: str = "text"
    id: str | None = None


@dataclass(frozen=True)
class Document:
    id: str
    source: str  # "relative/path:record", unique even where given ids repeat
    text: str | None
    error: str | None = None


@dataclass(frozen=True)
class CorpusFile:
    path: str  # as the filesystem names it
    rel: str  # relative to the corpus root: the stable part of document ids
    fmt: str
    gzip: bool
    records: int = 0
    # Why the file could not be read to its end; its last record is then an error row saying so.
    broken: str | None = None


@dataclass(frozen=True)
class Piece:
    """Records [start, stop) of one file."""

    file: CorpusFile
    start: int
    stop: int


@dataclass(frozen=True)
class Shard:
    index: int
    pieces: tuple[Piece, ...]

    @property
    def id(self) -> str:
        key = json.dumps([(p.file.rel, p.start, p.stop) for p in self.pieces])
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    @property
    def size(self) -> int:
        return sum(p.stop - p.start for p in self.pieces)


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


def _ignored(rel: str) -> bool:
    # Hidden files and Spark/Hadoop markers (_SUCCESS, _committed_*) are not documents.
    return any(part.startswith((".", "_")) for part in rel.split("/"))


def list_files(corpus: str) -> tuple[fsspec.AbstractFileSystem, list[CorpusFile]]:
    """The readable files of a corpus, sorted, or a CorpusError that says what is wrong."""
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
        rels = [(p, p[len(root) + 1 :], info["type"]) for p, info in sorted(found.items())]
        rels = [r for r in rels if not _ignored(r[1])]
    elif fs.isfile(root):
        rels = [(root, urls.file_name(root), "file")]
    else:
        raise CorpusError(f"corpus {corpus!r} is neither a file nor a directory (a pipe or a device?)")
    odd = [rel for _, rel, kind in rels if kind != "file"]
    if odd:
        raise CorpusError(
            f"{len(odd)} corpus entr{'y is' if len(odd) == 1 else 'ies are'} not regular files: {_some(odd)}; "
            "links to directories, broken or looping links and pipes are not followed: "
            "remove them, or point --corpus at what they link to"
        )
    files, unknown = [], []
    for path, rel, _ in rels:
        kind = file_format(rel)
        if kind is None:
            unknown.append(rel)
        else:
            files.append(CorpusFile(path=path, rel=rel, fmt=kind[0], gzip=kind[1]))
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


def _open(fs: fsspec.AbstractFileSystem, f: CorpusFile):
    return fs.open(f.path, "rb", compression="gzip" if f.gzip else None)


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


def _raw_lines(handle) -> Iterator[bytes]:
    """The file's lines as UTF-8 bytes: a UTF-16 file (BOM first) is decoded as it streams, so
    lines split on its newlines, not on every 0x0A byte of its two-byte characters. No seek:
    streamed files (gzip over HTTP) cannot go back."""
    head = handle.read(2)
    if head not in UTF16_BOMS:
        rest = iter(handle)
        # The two bytes read ahead, with the rest of their line (they may hold a line end).
        yield from io.BytesIO(head + next(rest, b""))
        yield from rest
        return
    decoder = codecs.getincrementaldecoder("utf-16")(errors="surrogateescape")
    pending = decoder.decode(head)
    for chunk in iter(lambda: handle.read(1 << 16), b""):
        *lines, pending = (pending + decoder.decode(chunk)).split("\n")
        yield from ((line + "\n").encode("utf-8", errors="surrogateescape") for line in lines)
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending.encode("utf-8", errors="surrogateescape")


def _lines(fs, f: CorpusFile) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, line) for each non-blank line; blank lines are not records."""
    with _open(fs, f) as handle:
        for number, line in enumerate(_raw_lines(handle), start=1):
            if line.strip():
                yield number, line.rstrip(b"\r\n")


def _csv_rows(fs, f: CorpusFile) -> tuple[list[str], list[list[str]]]:
    # surrogateescape keeps undecodable bytes visible per row instead of failing the file.
    with _open(fs, f) as handle:
        raw = handle.read()
    text = raw.decode("utf-16" if raw.startswith(UTF16_BOMS) else "utf-8-sig", errors="surrogateescape")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t" if f.fmt == "tsv" else ","))
    if not rows:
        return [], []
    return rows[0], [r for r in rows[1:] if any(cell.strip() for cell in r)]


def count_records(fs, f: CorpusFile) -> tuple[int, str | None]:
    """(records, None), or (records read + 1, why) for a file that breaks before its end.

    A damaged file (a gzip cut short, a permission error) does not stop the corpus: its readable
    records run, and one more record stands for the unreadable rest. The worker's reader fails at
    the same place and turns that record into an error row, so the manifest reconciles.
    """
    if f.fmt == "txt":
        return 1, None  # read whole by the worker; a read error is its one error row
    counted = 0
    try:
        if f.fmt == "jsonl":
            for _ in _lines(fs, f):
                counted += 1
        elif f.fmt in ("csv", "tsv"):
            counted = len(_csv_rows(fs, f)[1])
        else:
            with fs.open(f.path, "rb") as handle:
                counted = pq.ParquetFile(handle).metadata.num_rows
    except READ_ERRORS as exc:
        # csv and parquet are read whole: a break leaves nothing counted, one error row in all.
        return counted + 1, f"{type(exc).__name__}: {exc}"
    return counted, None


def check_fields(fs, f: CorpusFile, fields: Fields) -> None:
    """Refuse a corpus whose first record already lacks the text field: a wrong --text-field."""
    if f.fmt == "txt" or f.records == 0 or f.broken:
        return
    if f.fmt == "jsonl":
        for _, line in _lines(fs, f):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                names = list(record)
                break
        else:
            return
    elif f.fmt in ("csv", "tsv"):
        names = _csv_rows(fs, f)[0]
    else:
        with fs.open(f.path, "rb") as handle:
            names = pq.ParquetFile(handle).schema_arrow.names
    for wanted, flag in ((fields.text, "--text-field"), (fields.id, "--id-field")):
        if wanted is not None and wanted not in names:
            raise CorpusError(
                f"{f.rel!r} has no field {wanted!r} (it has {', '.join(map(repr, names[:10]))}); choose one with {flag}"
            )


def scan(corpus: str, fields: Fields) -> tuple[fsspec.AbstractFileSystem, list[CorpusFile]]:
    """List the corpus and count its records; refuse what cannot work before anything runs."""
    fs, files = list_files(corpus)
    counted = []
    for f in files:
        records, broken = count_records(fs, f)
        counted.append(dataclasses.replace(f, records=records, broken=broken))
    for f in counted:
        check_fields(fs, f, fields)
    if sum(f.records for f in counted) == 0:
        raise CorpusError(f"corpus is empty: {corpus!r} holds no documents")
    return fs, counted


def plan_shards(files: list[CorpusFile], shard_size: int) -> list[Shard]:
    """Cut files, in order, into shards of `shard_size` records; big files are split by range.

    The plan depends only on the file list, their record counts and shard_size, so a rerun over
    the same corpus gets the same shard ids and can skip the finished ones.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size!r}")
    shards: list[Shard] = []
    pieces: list[Piece] = []
    room = shard_size
    for f in files:
        start = 0
        while start < f.records:
            stop = min(f.records, start + room)
            pieces.append(Piece(f, start, stop))
            room -= stop - start
            start = stop
            if room == 0:
                shards.append(Shard(len(shards), tuple(pieces)))
                pieces, room = [], shard_size
    if pieces:
        shards.append(Shard(len(shards), tuple(pieces)))
    return shards


def _from_fields(record, source: str, fields: Fields) -> Document:
    if not isinstance(record, dict):
        return Document(source, source, None, f"record is {type(record).__name__}, not an object")
    doc_id = source
    if fields.id is not None:
        if record.get(fields.id) is None:
            return Document(source, source, None, f"no id field {fields.id!r}")
        doc_id = str(record[fields.id])
    text = record.get(fields.text)
    if text is None:
        return Document(doc_id, source, None, f"no text field {fields.text!r}")
    if not isinstance(text, str):
        return Document(doc_id, source, None, f"text field {fields.text!r} is {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # surrogates: undecodable bytes kept by _csv_rows
        return Document(doc_id, source, None, f"not valid UTF-8: character {exc.start}")
    if not text.strip():
        return Document(doc_id, source, None, "empty document")
    return Document(doc_id, source, text)


def _read_jsonl(fs, piece: Piece, fields: Fields) -> Iterator[Document]:
    for index, (number, line) in enumerate(_lines(fs, piece.file)):
        if index < piece.start:
            continue
        if index >= piece.stop:
            break
        source = f"{piece.file.rel}:{number}"
        text, error = decode(line)
        if error is not None:
            yield Document(source, source, None, error)
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            yield Document(source, source, None, f"malformed JSON: {exc}")
            continue
        yield _from_fields(record, source, fields)


def _read_csv(fs, piece: Piece, fields: Fields) -> Iterator[Document]:
    header, rows = _csv_rows(fs, piece.file)
    for index in range(piece.start, piece.stop):
        record = dict(zip(header, rows[index], strict=False))
        # +2: the header is line 1 and records count from 1, as a spreadsheet shows them.
        yield _from_fields(record, f"{piece.file.rel}:{index + 2}", fields)


def _read_parquet(fs, piece: Piece, fields: Fields) -> Iterator[Document]:
    columns = [fields.text] + ([fields.id] if fields.id else [])
    with fs.open(piece.file.path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        offset = 0
        for group in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            lo, hi = max(piece.start, offset), min(piece.stop, offset + rows)
            if lo < hi:
                table = parquet.read_row_group(group, columns=columns).slice(lo - offset, hi - lo)
                for i, record in enumerate(table.to_pylist()):
                    yield _from_fields(record, f"{piece.file.rel}:{lo + i}", fields)
            offset += rows


def _read_txt(fs, piece: Piece) -> Iterator[Document]:
    with _open(fs, piece.file) as handle:
        text, error = decode(handle.read())
    yield Document(piece.file.rel, piece.file.rel, text, error)


def read_piece(fs, piece: Piece, fields: Fields) -> Iterator[Document]:
    """Exactly piece.stop - piece.start documents; a file that breaks midway ends in error rows."""
    produced = 0
    try:
        if piece.file.fmt == "txt":
            reader = _read_txt(fs, piece)
        elif piece.file.fmt == "jsonl":
            reader = _read_jsonl(fs, piece, fields)
        elif piece.file.fmt in ("csv", "tsv"):
            reader = _read_csv(fs, piece, fields)
        else:
            reader = _read_parquet(fs, piece, fields)
        for doc in reader:
            produced += 1
            yield doc
        reason = "record missing: the file changed after it was counted"
    except READ_ERRORS as exc:
        reason = f"file unreadable: {type(exc).__name__}: {exc}"
    for index in range(piece.start + produced, piece.stop):
        source = f"{piece.file.rel}:#{index}"
        yield Document(source, source, None, reason)


def read_shard(fs, shard: Shard, fields: Fields) -> list[Document]:
    return [doc for piece in shard.pieces for doc in read_piece(fs, piece, fields)]
