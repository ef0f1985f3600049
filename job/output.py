"""Atomic Parquet parts and JSON files under the job's output directory (a path or fsspec URI).

A part is written under a temporary name and renamed once complete, so a part that exists is a
finished shard: that is what makes a rerun resume safely.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import fsspec

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from job.corpus import Shard

STATS_KEY = b"raybake"


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

    def finished(self) -> set[str]:
        try:
            listed = self.fs.ls(self.parts, detail=False, refresh=True)
        except FileNotFoundError:
            return set()  # an object store has no empty folders: no part yet
        names = (p.rsplit("/", 1)[-1] for p in listed)
        return {n for n in names if n.endswith(".parquet")}

    def _atomic(self, path: str, write: Callable[[BinaryIO], object]) -> None:
        # Hidden: a writer killed mid-write leaves a temp file that Parquet readers of parts/ skip.
        folder, _, name = path.rpartition("/")
        tmp = f"{folder}/.{name}.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as handle:
                write(handle)
            self.fs.mv(tmp, path)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)

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
            writer.add_key_value_metadata({STATS_KEY.decode(): json.dumps(part.stats)})
            writer.close()
            handle.close()
            self.fs.mv(tmp, f"{folder}/{name}")
        finally:
            if not handle.closed:
                handle.close()
            if self.fs.exists(tmp):
                self.fs.rm(tmp)

    def part_summary(self, name: str) -> tuple[dict[str, Any], pa.Array]:
        """A part's counts (from its footer) and its id column, in one open of the file."""
        import pyarrow.parquet as pq

        with self.fs.open(f"{self.parts}/{name}", "rb") as handle:
            part = pq.ParquetFile(handle)
            stats = json.loads(part.metadata.metadata[STATS_KEY])
            return stats, part.read(columns=["id"]).column("id").combine_chunks()

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
        self.stats: dict[str, Any] = {}

    def __call__(self, table: pa.Table) -> None:
        self.writer.write_table(table)
