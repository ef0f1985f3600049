"""Atomic Parquet parts and JSON files under the job's output directory (a path or fsspec URI).

A part is written under a temporary name, flushed to disk (fsync) and renamed once complete, so a
part that exists is a finished shard: that is what makes a rerun resume safely. A part that is
there but cannot be read (a node that crashed before the data reached its disk, a stray file with
a planned name) is moved aside, and its shard is done again.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import fsspec

from job.records import ShardStats

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from job.corpus import Shard

STATS_KEY = b"raybake"
# Where a finished part that cannot be read goes: hidden, so readers of parts/ skip it.
DAMAGED_DIR = ".damaged"


class DamagedPart(Exception):
    """A finished part that cannot be read: empty, cut short, or not a part of this job."""


def part_name(shard: Shard) -> str:
    """The part file of a shard: its index for humans, its id so a changed plan never matches."""
    return f"part-{shard.index:05d}-{shard.id}.parquet"


class Output:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, self.root = fsspec.core.url_to_fs(uri)
        self.root = self.root.rstrip("/")
        self.parts = f"{self.root}/parts"
        self.fs.makedirs(self.parts, exist_ok=True)
        # An object store's write is durable once it returns; a file system's only after fsync.
        self.local = "file" in self.fs.protocol

    def finished(self) -> set[str]:
        try:
            listed = self.fs.ls(self.parts, detail=False, refresh=True)
        except FileNotFoundError:
            return set()  # an object store has no empty folders: no part yet
        names = (p.rsplit("/", 1)[-1] for p in listed)
        return {n for n in names if n.endswith(".parquet")}

    def sweep_temporaries(self) -> None:
        """Remove the temp files of part writers that died: the shards of a run are all done, so
        these were written by a stopped attempt whose worker outlived the redo of its shard."""
        try:
            listed = self.fs.ls(self.parts, detail=False, refresh=True)
        except FileNotFoundError:
            return
        for path in listed:
            name = path.rsplit("/", 1)[-1]
            if name.startswith(".part-") and ".parquet.tmp-" in name:
                self.fs.rm(path)

    def _atomic(self, path: str, write: Callable[[BinaryIO], object]) -> None:
        # Hidden: a writer killed mid-write leaves a temp file that Parquet readers of parts/ skip.
        folder, _, name = path.rpartition("/")
        tmp = f"{folder}/.{name}.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as handle:
                write(handle)
                self._sync(handle)
            self.fs.mv(tmp, path)
            self._sync_dir(folder)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)

    def _sync(self, handle: Any) -> None:
        """The file's bytes on disk before its rename makes it count: else a node crash can leave a
        finished part (or spec.json) empty under its final name."""
        if self.local:
            handle.flush()
            os.fsync(handle.fileno())

    def _sync_dir(self, folder: str) -> None:
        if self.local:
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def part_writer(self, name: str, schema: pa.Schema) -> Iterator[_Part]:
        """Write a part a table (row group) at a time, so a shard of any size streams through a
        worker. The caller sets `stats` on the yielded writer before leaving: the part carries its
        own counts in its footer, and the manifest reads footers, not rows."""
        import pyarrow.parquet as pq  # here: the driver's check and plan never need pyarrow

        # A writer killed mid-part left its temp file; the shard is redone now, so it goes.
        for leftover in self.fs.glob(f"{self.parts}/.{name}.tmp-*"):
            self.fs.rm(leftover)
        # ParquetWriter needs an open handle for the life of the part: open it here, atomically.
        folder, tmp = self.parts, f"{self.parts}/.{name}.tmp-{uuid.uuid4().hex}"
        handle = self.fs.open(tmp, "wb")
        writer = pq.ParquetWriter(handle, schema)
        part = _Part(writer)
        try:
            yield part
            writer.add_key_value_metadata({STATS_KEY.decode(): json.dumps(part.stats.to_json())})
            writer.close()
            self._sync(handle)
            handle.close()
            self.fs.mv(tmp, f"{folder}/{name}")
            self._sync_dir(folder)
        finally:
            if not handle.closed:
                handle.close()
            if self.fs.exists(tmp):
                self.fs.rm(tmp)

    def part_stats(self, name: str) -> tuple[ShardStats, int]:
        """A part's counts and its rows, from its footer alone; DamagedPart if it cannot be read.
        Rows, not documents: under --long-documents chunk a document has a row per chunk."""
        import pyarrow.parquet as pq

        try:
            with self.fs.open(f"{self.parts}/{name}", "rb") as handle:
                footer = pq.ParquetFile(handle).metadata
                return ShardStats.from_json(json.loads(footer.metadata[STATS_KEY])), footer.num_rows
        except (OSError, ValueError, KeyError, TypeError) as exc:  # ArrowInvalid is a ValueError
            raise DamagedPart(f"{name}: {type(exc).__name__}: {exc}") from exc

    def document_ids(self, name: str) -> pa.Array:
        """The id of each document of a part: one per document, however many rows it has (a
        document cut into chunks has a row per chunk, numbered in `chunk` from 0)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with self.fs.open(f"{self.parts}/{name}", "rb") as handle:
            part = pq.ParquetFile(handle)
            chunked = "chunk" in part.schema_arrow.names
            table = part.read(columns=["id", "chunk"] if chunked else ["id"])
        if chunked:
            chunk = table.column("chunk")
            table = table.filter(pc.or_kleene(pc.is_null(chunk), pc.equal(chunk, 0)))
        return table.column("id").combine_chunks()

    def move_aside(self, name: str) -> str:
        """Move a damaged part out of parts/ (kept, for a post-mortem): its shard is redone."""
        aside = f"{self.parts}/{DAMAGED_DIR}/{name}.{uuid.uuid4().hex[:8]}"
        self.fs.makedirs(f"{self.parts}/{DAMAGED_DIR}", exist_ok=True)
        self.fs.mv(f"{self.parts}/{name}", aside)
        return aside

    def create_json(self, name: str, data: dict[str, Any]) -> bool:
        """Write `name` only if it does not exist, in one step no other writer can come between
        (O_EXCL on a file system, `If-None-Match: *` on S3); False if it was there already."""
        body = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
        path = f"{self.root}/{name}"
        if not self.local:
            try:
                self.fs.pipe_file(path, body, mode="create")
            except FileExistsError:
                return False
            return True
        tmp = f"{self.root}/.{name}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as handle:
            handle.write(body)
            self._sync(handle)
        try:
            os.link(tmp, path)  # whole or not at all, and refused where the name exists
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        self._sync_dir(self.root)
        return True

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        body = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
        self._atomic(f"{self.root}/{name}", lambda handle: handle.write(body))

    def read_json(self, name: str) -> dict[str, Any] | None:
        path = f"{self.root}/{name}"
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "rb") as handle:
            return json.load(handle)


class _Part:
    """A part being written: call it with a table per chunk; set `stats` before it closes."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self.writer = writer
        self.stats = ShardStats()

    def __call__(self, table: pa.Table) -> None:
        self.writer.write_table(table)
