"""`python -m job`: argument parsing only; the work is in job.run."""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import sys
import traceback

from job import credentials, failure, urls
from job.config import (
    DEFAULT_MODEL,
    DEFAULT_TASK,
    DEFAULT_TEXT_FIELD,
    SPEC_FLAG,
    SPEC_VARIABLE,
    TASK_NAMES,
    TOKEN_BUDGET,
    TRACEBACK_BEGIN,
    TRACEBACK_END,
    TaskOptions,
    WorkerConfig,
)
from job.corpus import MAX_RECORD_BYTES, SHARDS_PER_CORPUS, SPLIT_BYTES_MAX, SPLIT_BYTES_MIN, Fields
from job.run import RunConfig, run

# Where the options come from when raybake sends them (SPEC_FLAG): the variable SPEC_VARIABLE, or
# stdin; either way base64 of their JSON list. Never the command line: it is in every process list
# and job listing, and the options may hold a presigned URL's signature.
SPEC_SOURCES = ("env", "stdin")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m job",
        description="Run a transformers model over a text corpus on Ray; write Parquet parts and "
        "manifest.json. Rerunning with the same arguments resumes: finished shards are skipped. "
        f"{SPEC_FLAG} env|stdin stands for the options as base64 of their JSON list, in ${SPEC_VARIABLE} "
        "or on stdin (what raybake sends).",
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
    p.add_argument("--retries", type=int, default=3, help="attempts per shard after a failure")
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


def expand_spec(argv: list[str], *, stdin: str | None = None) -> list[str]:
    """`--spec-from SOURCE` replaced by the options it names: base64 of their JSON list of strings,
    in $RAYBAKE_SPEC (`env`) or on stdin. Options beside it (`--check`) still apply."""
    if SPEC_FLAG not in argv:
        return argv
    at = argv.index(SPEC_FLAG)
    source = argv[at + 1] if at + 1 < len(argv) else None
    if source is None or (source not in SPEC_SOURCES and not os.path.isabs(source)):
        parser().error(f"{SPEC_FLAG} takes one of {', '.join(SPEC_SOURCES)} or a file's absolute path, got {source!r}")
    if source == "env":
        encoded = os.environ.get(SPEC_VARIABLE, "")
    elif source == "stdin":
        encoded = sys.stdin.read() if stdin is None else stdin
    else:
        encoded = _read_once(source)
    try:
        spec = json.loads(base64.b64decode(encoded.strip(), validate=True))
    except ValueError as exc:
        parser().error(f"{SPEC_FLAG} {source}: not base64 of a JSON list: {exc}")
    if not isinstance(spec, list) or not all(isinstance(a, str) for a in spec):
        parser().error(f"{SPEC_FLAG} {source} must hold a JSON list of strings")
    return [*argv[:at], *spec, *argv[at + 2 :]]


def _read_once(path: str) -> str:
    """A spec file's options, and the file gone: it may hold a URL's signature (raybake's
    embedded Ray writes one per job, mode 0600)."""
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError as exc:
        parser().error(f"{SPEC_FLAG} {path!r}: {exc.strerror or exc}")
    os.unlink(path)
    return text


def shown(argv: list[str]) -> str:
    """The command as the manifest records it: the options, URL credentials masked."""
    return shlex.join(["python", "-m", "job", *(urls.redact(a) for a in argv)])


def main(argv: list[str] | None = None) -> int:
    p = parser()
    options = expand_spec(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(options)
    if args.output is None and not args.check:
        p.error("--output is required (or --check to only check the corpus)")
    numbers = ("max_length", "top_k", "max_new_tokens", "split_bytes", "max_record_bytes", "token_budget")
    positive(p, args, *numbers, "max_batch_size", "workers")
    task = TaskOptions(
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
        options=task,
        fields=Fields(text=args.text_field, id=args.id_field),
        corpus=args.corpus,
        output=args.output,
        token_budget=args.token_budget,
        max_batch_size=args.max_batch_size,
        threads=1,
        max_record_bytes=args.max_record_bytes,
    )
    config = RunConfig(
        worker=worker,
        split_bytes=args.split_bytes,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        retries=args.retries,
        check_only=args.check,
        keep_warm_s=max(0.0, args.keep_warm_seconds),
        command=shown(options),
    )
    credentials.load()
    try:
        return run(config)
    except Exception as exc:  # noqa: BLE001 - every cause ends as one line and a code; its traceback stays in the log
        print(TRACEBACK_BEGIN, urls.shown(traceback.format_exc()).rstrip("\n"), TRACEBACK_END, sep="\n", flush=True)
        code, reason = failure.explain(exc)
        print(f"raybake: error: {urls.shown(reason)}", flush=True)
        return code
    finally:
        credentials.discard()


if __name__ == "__main__":
    sys.exit(main())
