"""The records that cross modules, processes and the client/job boundary, each with its JSON shape.

- ShardStats: what a worker did with one shard; returned by PoolWorker.process and kept in the
  part's Parquet footer, from which the manifest is reconciled.
- WorkerInfo: one worker as a job got it, and where its time went (the manifest's `workers`).
- Manifest: the run's account, `manifest.json` under --output.
- StateFile, ImageEntry: the client's `.raybake/state.json`.

Standard library only, and nothing else of job/: the client (raybake/) imports this module, the
one part of job/ it may (tests/unit/test_layers.py). Each record's to_json gives the keys its file
has always had, so outputs written before and after read alike; from_json reads them back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Self, TypedDict

# Where a shard's time went, in the order a chunk passes through them. `wait`: the model waited
# for input.
PHASES = ("read", "tokenize", "compute", "write", "wait")


def _known(cls: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of `data` that are fields of the dataclass `cls`: a file written by a later
    job may hold more."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


class _Record:
    """A dataclass whose JSON is its fields."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(**_known(cls, data))


@dataclass(kw_only=True)
class PhaseSeconds:
    """Where the time went, a field per phase (PHASES)."""

    read_seconds: float = 0.0
    tokenize_seconds: float = 0.0
    compute_seconds: float = 0.0
    write_seconds: float = 0.0
    wait_seconds: float = 0.0

    def phase_seconds(self) -> dict[str, float]:
        """`read_seconds` and the like, by phase name (`read`)."""
        return {phase: getattr(self, f"{phase}_seconds") for phase in PHASES}


@dataclass(kw_only=True)
class ShardStats(PhaseSeconds, _Record):
    """Every field has a default: a footer written by an earlier job may lack a later one."""

    shard: str = ""
    documents: int = 0
    ok: int = 0
    error: int = 0
    truncated: int = 0
    # --long-documents chunk: the windows made, and the documents cut into more than one.
    chunks: int = 0
    chunked: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    real_tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0
    # A task's counted columns (generate's tokens), summed over the shard.
    column_sums: dict[str, int] = field(default_factory=dict)
    bytes_planned: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    # The worker process's peak so far: flat across shards means bounded memory.
    peak_rss_mib: float = 0.0


@dataclass
class WorkerInfo(_Record):
    host: str
    pid: int
    device: str
    dtype: str
    threads: int
    model_path: str | None
    revision: str | None
    max_length: int
    token_budget: int
    load_seconds: float
    # Loaded for an earlier job, and this one did not wait for it.
    warm: bool = False
    loaded_at: float | None = None  # epoch seconds
    # Summed over this worker's shards, by phase (PHASES); filled in once the job's shards are done.
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: float = 0.0


@dataclass
class Counts:
    documents: int
    ok: int
    error: int
    # Documents of unfinished shards were never read: nobody knows how many there are (None).
    missing: int | None
    truncated: int
    # Documents whose --id-field value an earlier document already has: both are kept (`source`
    # tells them apart), and this says the ids are not keys. Documents, not rows: under
    # --long-documents chunk a document's id repeats on each of its chunk rows.
    duplicate_ids: int


@dataclass
class ChunkCounts:
    """--long-documents chunk: the windows made, and the documents longer than one window."""

    total: int
    documents_chunked: int


@dataclass
class ShardCounts:
    total: int
    resumed: int
    failed: dict[str, str]  # shard id: why
    missing: int


@dataclass
class ByteCounts:
    corpus: int
    missing: int
    read: int
    # Bytes the readers read over the bytes of the shards they finished: 1.0 is each byte once.
    read_amplification: float | None


@dataclass
class PartEntry:
    file: str  # parts/part-NNNNN-<shard id>.parquet, relative to --output
    rows: int
    shard: str


@dataclass
class Tokens:
    real: int
    padded: int
    padding_efficiency: float | None
    # The task's counted columns (generate's tokens): keys of `tokens` beside these in the file.
    sums: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        fixed = {k: v for k, v in asdict(self).items() if k != "sums"}
        return {**fixed, **self.sums}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        fixed = {"real", "padded", "padding_efficiency"}
        return cls(**{k: data[k] for k in fixed}, sums={k: v for k, v in data.items() if k not in fixed})


@dataclass(kw_only=True)
class Timings(PhaseSeconds):
    """The phases' seconds summed over shards; per worker in WorkerInfo.seconds."""

    started: str  # ISO 8601, UTC
    finished: str
    wall_seconds: float
    plan_seconds: float | None
    workers_ready: float | None  # epoch seconds: every worker had its model loaded
    processing_seconds: float | None  # from ready to the last shard: throughput's clock


@dataclass
class ModelEntry:
    name: str
    path: str | None  # where the workers loaded it from
    revision: str | None


@dataclass
class Manifest:
    status: str  # complete, incomplete
    # spec.json's content: what determines the results (job/spec.py).
    spec: dict[str, Any]
    counts: Counts
    errors_by_reason: dict[str, int]
    chunks: ChunkCounts
    shards: ShardCounts
    bytes: ByteCounts
    parts: list[PartEntry]
    stale_parts: list[str]  # parts of shards this plan does not have
    tokens: Tokens
    timings: Timings
    workers: list[WorkerInfo]
    model: ModelEntry
    versions: dict[str, str | None]
    raybake_version: str | None
    git_sha: str | None
    image: str | None
    expected_image: str | None
    command: str

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "tokens": self.tokens.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        nested = {
            "counts": Counts,
            "chunks": ChunkCounts,
            "shards": ShardCounts,
            "bytes": ByteCounts,
            "timings": Timings,
            "model": ModelEntry,
        }
        return cls(
            **{
                **_known(cls, data),
                **{key: kind(**data[key]) for key, kind in nested.items()},
                "parts": [PartEntry(**part) for part in data["parts"]],
                "tokens": Tokens.from_json(data["tokens"]),
                "workers": [WorkerInfo.from_json(worker) for worker in data["workers"]],
            }
        )


# The client's state file: JSON-shaped (TypedDicts), since its writers add entries by key and its
# tests compare them with literals. Each section maps a name to an entry.


class ImageEntry(TypedDict, total=False):
    """A variant's last build."""

    ref: str
    git_ref: str | None
    content_hash: str
    pushed: str  # the registry's reference by digest, once pushed


class StateFile(TypedDict, total=False):
    images: dict[str, ImageEntry]  # by variant
    # The fields of the backends' own records, which read them back: an `invoke up` cluster
    # (raybake/clusters/localcluster.py's Cluster) by name, an embedded Ray head
    # (raybake/clusters/embedded.py's Head) by dashboard port.
    clusters: dict[str, dict[str, Any]]
    local_ray: dict[str, dict[str, Any]]
    job_tokens: dict[str, str]  # by NAMESPACE/RAYJOB
