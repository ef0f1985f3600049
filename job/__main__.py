"""`python -m job`: argument parsing only; the work is in job.run."""

from __future__ import annotations

import argparse
import base64
import json
import sys

from job.config import (
    DEFAULT_MODEL,
    DEFAULT_TASK,
    DEFAULT_TEXT_FIELD,
    TASK_NAMES,
    TOKEN_BUDGET,
    TaskOptions,
    WorkerConfig,
)
from job.corpus import MAX_RECORD_BYTES, SHARDS_PER_CORPUS, SPLIT_BYTES_MAX, SPLIT_BYTES_MIN, Fields
from job.run import DEFAULT_MAX_ERROR_RATE, RunConfig, run

SPEC_FLAG = "--spec-b64"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m job",
        description="Run a transformers model over a text corpus on Ray; write Parquet parts and "
        "manifest.json. Rerunning with the same arguments resumes: finished shards are skipped. "
        f"{SPEC_FLAG} B64 stands for the options as base64 of their JSON list (what raybake sends).",
    )
    p.add_argument(
        "--corpus",
        required=True,
        help="file or directory (path or fsspec URI): "
        ".txt (one document per file), .jsonl, .csv, .tsv, .parquet, optionally .gz",
    )
    p.add_argument("--output", help="output directory (path or fsspec URI); required unless --check")
    p.add_argument("--task", choices=TASK_NAMES, default=DEFAULT_TASK, help="model task (default: %(default)s)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local directory (default: %(default)s)")
    p.add_argument("--revision", default=None, help="model revision (branch, tag or commit) on the hub")
    p.add_argument(
        "--text-field",
        default=DEFAULT_TEXT_FIELD,
        help="text field/column of jsonl, csv, parquet (default: %(default)s)",
    )
    p.add_argument("--id-field", default=None, help="id field/column; default: the source, file@byte or file:line")
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="truncate inputs to this many tokens (default: the model's limit); truncated documents are counted",
    )
    p.add_argument("--top-k", type=int, default=1, help="classify: labels to keep per document")
    p.add_argument("--max-new-tokens", type=int, default=32, help="generate: new tokens per document")
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="model dtype (auto: bf16/fp16 on GPU, float32 on CPU)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: GPU if any")
    p.add_argument(
        "--split-bytes",
        type=int,
        default=None,
        help=f"corpus bytes per shard, the resume unit (default: corpus / {SHARDS_PER_CORPUS}, "
        f"within {SPLIT_BYTES_MIN >> 10} KiB..{SPLIT_BYTES_MAX >> 20} MiB)",
    )
    p.add_argument(
        "--max-record-bytes",
        type=int,
        default=MAX_RECORD_BYTES,
        help="a longer record is an error row 'record too long', never read whole (default: %(default)s)",
    )
    p.add_argument(
        "--token-budget",
        type=int,
        default=None,
        help=f"padded tokens per batch (default: {TOKEN_BUDGET['cuda']} on GPU; on CPU {TOKEN_BUDGET['cpu']} "
        "for a MiniLM-sized model, more for a narrower one)",
    )
    p.add_argument("--max-batch-size", type=int, default=256, help="documents per batch at most")
    p.add_argument("--workers", type=int, default=None, help="default: one per GPU, else per CPU group")
    p.add_argument("--cpus-per-worker", type=float, default=None, help="CPUs (torch threads) per worker")
    p.add_argument(
        "--retries",
        type=int,
        default=3,
        help="attempts per shard after a failure (a timeout, a dropped connection, a 5xx, a worker that died), "
        "each after a longer wait (default: %(default)s)",
    )
    p.add_argument(
        "--max-error-rate",
        type=float,
        default=DEFAULT_MAX_ERROR_RATE,
        help="fail the job when more than this share of the documents read failed in the model "
        "('model failed' rows): a broken model or device, not a bad document (default: %(default)s)",
    )
    p.add_argument(
        "--keep-warm-seconds",
        type=float,
        default=0,
        help="keep the workers, model loaded, this long after the job for the next job of the same "
        "model and settings (raybake's embedded local Ray sets it; default: they end with the job)",
    )
    p.add_argument("--check", action="store_true", help="only read and plan the corpus; refuse bad input")
    return p


def positive(p: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value!r}")


def expand_spec(argv: list[str]) -> list[str]:
    """`--spec-b64 X` replaced by the options it holds: base64 of their JSON list of strings.

    The client sends its options so (raybake/spec.py): no shell on the way, Ray's or KubeRay's
    submitter, can read a corpus name as shell text. Options beside it (`--check`) still apply."""
    if SPEC_FLAG not in argv:
        return argv
    at = argv.index(SPEC_FLAG)
    if at + 1 >= len(argv):
        parser().error(f"{SPEC_FLAG} needs a value")
    try:
        spec = json.loads(base64.b64decode(argv[at + 1], validate=True))
    except ValueError as exc:
        parser().error(f"{SPEC_FLAG} is not base64 of a JSON list: {exc}")
    if not isinstance(spec, list) or not all(isinstance(a, str) for a in spec):
        parser().error(f"{SPEC_FLAG} must hold a JSON list of strings")
    return [*argv[:at], *spec, *argv[at + 2 :]]


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(expand_spec(sys.argv[1:] if argv is None else argv))
    if args.output is None and not args.check:
        p.error("--output is required (or --check to only check the corpus)")
    numbers = ("max_length", "top_k", "max_new_tokens", "split_bytes", "max_record_bytes", "token_budget")
    positive(p, args, *numbers, "max_batch_size", "workers")
    options = TaskOptions(
        max_length=args.max_length,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        dtype=args.dtype,
        device=args.device,
        revision=args.revision,
    )
    worker = WorkerConfig(
        task=args.task,
        model=args.model,
        options=options,
        fields=Fields(text=args.text_field, id=args.id_field),
        corpus=args.corpus,
        output=args.output,
        token_budget=args.token_budget,
        max_batch_size=args.max_batch_size,
        threads=1,
        max_record_bytes=args.max_record_bytes,
    )
    return run(
        RunConfig(
            worker=worker,
            split_bytes=args.split_bytes,
            workers=args.workers,
            cpus_per_worker=args.cpus_per_worker,
            retries=args.retries,
            check_only=args.check,
            keep_warm_s=max(0.0, args.keep_warm_seconds),
            max_error_rate=args.max_error_rate,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
