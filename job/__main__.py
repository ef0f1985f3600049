"""`python -m job`: argument parsing only; the work is in job.driver."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import shlex
import sys
import traceback

from job import credentials, failure, urls
from job.config import (
    AGGREGATIONS,
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_MODEL,
    DEFAULT_STRIDE,
    DEFAULT_TEXT_FIELD,
    DOCUMENT_POOLING,
    LONG_DOCUMENTS,
    SPEC_FLAG,
    SPEC_VARIABLE,
    TOKEN_BUDGET,
    TRACEBACK_BEGIN,
    TRACEBACK_END,
    RunConfig,
    TaskOptions,
    WorkerConfig,
)
from job.corpus import (
    MAX_RECORD_BYTES,
    SHARDS_PER_CORPUS,
    SPLIT_BYTES_MAX,
    SPLIT_BYTES_MIN,
    Fields,
    template_names,
)
from job.driver import run
from job.pipelines import CHUNK_TASKS, DEFAULT_TASK, TASK_NAMES

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
    prompts = p.add_mutually_exclusive_group()
    prompts.add_argument(
        "--prompt",
        default=None,
        help="embed: text put before each document, as sentence-transformers' encode(prompt=...) "
        "(default: the model's default prompt, if its configuration names one)",
    )
    prompts.add_argument(
        "--prompt-name",
        default=None,
        help="embed: the model's own prompt of that name (config_sentence_transformers.json), e.g. query",
    )
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
        "--aggregation",
        choices=AGGREGATIONS,
        default="simple",
        help="ner: how token tags become entities, as transformers' token-classification pipeline's "
        "aggregation_strategy (none: one row per tagged token; first, average, max: one tag per word; "
        "default: %(default)s)",
    )
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
    p.add_argument(
        "--long-documents",
        choices=LONG_DOCUMENTS,
        default="truncate",
        help="a document longer than the model's limit: truncate (the default, as sentence-transformers and "
        "transformers' pipelines do: one row per document, each cut one marked `truncated` and counted) or "
        f"chunk ({' and '.join(CHUNK_TASKS)} only): windows of the model's length that overlap by --stride",
    )
    p.add_argument(
        "--stride",
        type=int,
        default=DEFAULT_STRIDE,
        help="chunk: tokens shared by consecutive windows, fewer than a window holds (default: %(default)s)",
    )
    p.add_argument(
        "--document-pooling",
        choices=DOCUMENT_POOLING,
        default="none",
        help="embed, chunk: none (a row per chunk, with its span) or mean (a row per document, the mean "
        "of its chunks' vectors, normalised again if the model normalises) (default: %(default)s)",
    )
    p.add_argument("--check", action="store_true", help="only read and plan the corpus; refuse bad input")
    p.add_argument(
        "--prompt-template",
        default=None,
        help='generate: the prompt, a str.format template of the record\'s fields, e.g. "Summarise: {text}" '
        "({text} is --text-field's value); a record without a named field is an error row",
    )
    p.add_argument(
        "--chat",
        choices=["auto", "on", "off"],
        default="auto",
        help="generate: wrap the prompt in the tokenizer's chat template as the user's turn "
        "(auto: where it has one; on: refuse a tokenizer without one) (default: %(default)s)",
    )
    p.add_argument(
        "--system", default=None, help="generate: a system message before the prompt (needs a chat template)"
    )
    p.add_argument("--temperature", type=float, default=0.0, help="generate: sampling temperature; 0 is greedy")
    p.add_argument("--top-p", type=float, default=1.0, help="generate: nucleus sampling mass, in (0, 1] (default: 1)")
    p.add_argument(
        "--stop",
        action="append",
        default=[],
        help="generate: end a completion at this string, left out of the text (repeatable)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="generate: sampling seed; with the document id it seeds each document's own sample, "
        "so a sample does not depend on its batch (default: %(default)s)",
    )
    return p


def positive(p: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value!r}")


def generation(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse generation options that cannot work, before any worker starts."""
    if args.prompt_template is not None:
        if args.task != "generate":
            p.error(f"--prompt-template is for --task generate, not {args.task!r}")
        try:
            template_names(args.prompt_template)
        except ValueError as exc:
            p.error(str(exc))
    if not args.temperature >= 0:  # also NaN
        p.error(f"--temperature must be >= 0 (0 is greedy), got {args.temperature!r}")
    if not 0 < args.top_p <= 1:
        p.error(f"--top-p must be in (0, 1], got {args.top_p!r}")
    if "" in args.stop:
        p.error("--stop needs a non-empty string, got ''")
    if args.system is not None and args.chat == "off":
        p.error("--system needs the model's chat template: drop --chat off (or put the text in --prompt-template)")


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
    if args.task != "embed" and (args.prompt is not None or args.prompt_name is not None):
        p.error(f"--prompt and --prompt-name are options of --task embed, not of --task {args.task}")
    generation(p, args)
    if args.long_documents == "chunk" and args.task not in CHUNK_TASKS:
        p.error(f"--long-documents chunk is for {' and '.join(CHUNK_TASKS)}, not --task {args.task!r}; use truncate")
    if args.document_pooling != "none" and (args.task, args.long_documents) != ("embed", "chunk"):
        p.error(f"--document-pooling {args.document_pooling} is for --task embed --long-documents chunk")
    # The stride matters only to windows: a short --max-length that truncates needs none.
    chunked = args.long_documents == "chunk"
    if args.stride < 0 or (chunked and args.max_length is not None and args.stride >= args.max_length):
        p.error(f"--stride must be >= 0 and less than a window's tokens (--max-length), got {args.stride!r}")
    # Every task option is the flag of its name (stop strings: a tuple, as they hash and compare).
    task = TaskOptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(TaskOptions)} | {"stop": tuple(args.stop)}
    )
    worker = WorkerConfig(
        task=args.task,
        model=args.model,
        options=task,
        fields=Fields(text=args.text_field, id=args.id_field, template=args.prompt_template),
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
        max_error_rate=args.max_error_rate,
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
