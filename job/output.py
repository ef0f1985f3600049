"""Atomic Parquet parts and JSON files under the job's output directory (a path or fsspec URI).

A part is written under a temporary name and renamed once complete, so a part that exists is a
finished shard: that is what makes a rerun resume safely.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

STATS_KEY = b"raybake"


def part_name(shard) -> str:
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
        names = (p.rsplit("/", 1)[-1] for p in self.fs.ls(self.parts, detail=False))
        return {n for n in names if n.endswith(".parquet")}

    def _atomic(self, path: str, write) -> None:
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

    def write_part(self, name: str, table: pa.Table, stats: dict[str, Any]) -> None:
        # A writer killed mid-part left its temp file; the shard is redone now, so it goes.
        for leftover in self.fs.glob(f"{self.parts}/.{name}.tmp-*"):
            self.fs.rm(leftover)
        # The part carries its own counts in its footer: the manifest reads footers, not rows.
        table = table.replace_schema_metadata({STATS_KEY: json.dumps(stats).encode()})
        self._atomic(f"{self.parts}/{name}", lambda handle: pq.write_table(table, handle))

    def part_summary(self, name: str) -> tuple[dict[str, Any], pa.Array]:
        """A part's counts (from its footer) and its id column, in one open of the file."""
        with self.fs.open(f"{self.parts}/{name}", "rb") as handle:
            part = pq.ParquetFile(handle)
            stats = json.loads(part.schema_arrow.metadata[STATS_KEY])
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
