"""job/output.py: parts appear whole or not at all, and a killed writer's leftovers go."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from job.output import Output
from job.records import ShardStats


def test_a_redone_shard_removes_the_temp_file_a_killed_writer_left(tmp_path):
    output = Output(str(tmp_path / "out"))
    parts = tmp_path / "out" / "parts"
    killed = parts / ".part-00001-aaaa.parquet.tmp-0123456789abcdef"
    other = parts / ".part-00002-bbbb.parquet.tmp-fedcba9876543210"
    killed.write_bytes(b"PAR1 half a part")
    other.write_bytes(b"PAR1 half another part")

    with output.part_writer("part-00001-aaaa.parquet", pa.schema([("id", pa.string())])) as part:
        part(pa.table({"id": ["a"]}))
        part.stats = ShardStats(ok=1)

    assert not killed.exists()
    assert other.exists()  # its shard is not redone yet: its writer may still be running
    assert pq.read_table(parts / "part-00001-aaaa.parquet").column("id").to_pylist() == ["a"]
    assert output.finished() == {"part-00001-aaaa.parquet"}


def test_a_finished_run_sweeps_the_temp_files_of_part_writers_that_died(tmp_path):
    output = Output(str(tmp_path / "out"))
    parts = tmp_path / "out" / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    (parts / "part-00005-bb10715068eb.parquet").write_bytes(b"a finished part")
    (parts / ".part-00005-bb10715068eb.parquet.tmp-f771fa3ccf6f4dd2").write_bytes(b"a stopped attempt's")
    output.sweep_temporaries()
    assert sorted(p.name for p in parts.iterdir()) == ["part-00005-bb10715068eb.parquet"]
    Output(str(tmp_path / "empty")).sweep_temporaries()  # no parts folder yet: nothing to do
