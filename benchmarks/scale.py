"""`invoke bench --scale`: the data plane at corpus scale, against a plain loop in the same run.

A tiny random BERT (one layer, width 32) with the real MiniLM tokenizer is built here, so the
model costs little and what is measured is reading, planning, tokenizing and writing: the part
that must keep a fast GPU fed. Measured, each against the same plain single-process loop (read
the file, tokenize batches of 256, same model, mean-pool):
  - the whole `invoke submit` (client start, check, submit, follow, summary, a worker start and
    model load) on one JSONL file of --docs documents, and on a tenth of it, in shards of one
    size (peak worker RSS must not grow with the corpus);
  - the same documents spread over SCALE_FILES files: plan seconds; and as SCALE_FILES Parquet
    files, the plan alone (every footer read);
  - the fixed cost of a submit: the example corpus end to end (its first job, which loads the
    model, and the next ones, which find their workers warm) against Ray's own `ray job submit`
    of a trivial script, both on the same warm local Ray.
Baseline and raybake runs alternate, so a busy minute on a shared machine hurts both alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.throughput import model_dir, vocabulary
from raybake.clusters.embedded import url
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.versions import ROOT

BASELINE_BATCH = 256
SCALE_FILES = 10_000
# Shard size of the scale runs: about 10,000 short documents, more than a worker's chunk.
SCALE_SPLIT = 1 << 20
EXAMPLE = ROOT / "examples" / "corpus"


def make_tiny_model(directory: Path) -> str:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    if not (directory / "config.json").exists():
        torch.manual_seed(0)
        config = BertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
        )
        BertModel(config).save_pretrained(directory)
        AutoTokenizer.from_pretrained(model_dir()).save_pretrained(directory)
    return str(directory)


def _lines(docs: int, seed: int) -> Iterator[str]:
    rng, words = random.Random(seed), vocabulary()
    for i in range(docs):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(6, 16)))
        yield json.dumps({"id": str(i), "text": text}) + "\n"


@contextlib.contextmanager
def _made(path: Path) -> Iterator[Path | None]:
    """A corpus made once: a temp path to fill (None if `path` exists already), renamed to `path`
    when complete, so an interrupted bench never leaves a partial corpus to reuse."""
    if path.exists():
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else partial.unlink(missing_ok=True)
    yield partial
    partial.rename(path)


def make_one_file(path: Path, docs: int) -> Path:
    with _made(path) as partial:
        if partial is not None:
            with partial.open("w") as f:
                f.writelines(_lines(docs, 1234))
    return path


def make_many_files(directory: Path, docs: int, files: int) -> Path:
    with _made(directory) as partial:
        if partial is not None:
            partial.mkdir()
            lines = list(_lines(docs, 4321))
            per = -(-docs // files)
            for i in range(files):
                (partial / f"part-{i:05d}.jsonl").write_text("".join(lines[i * per : (i + 1) * per]))
    return directory


def make_many_parquet(directory: Path, docs: int, files: int) -> Path:
    """The same documents as Parquet, `files` files: a plan reads every footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _made(directory) as partial:
        if partial is not None:
            partial.mkdir()
            rows = [json.loads(line) for line in _lines(docs, 4321)]
            per = -(-docs // files)
            for i in range(files):
                table = pa.Table.from_pylist(rows[i * per : (i + 1) * per])
                pq.write_table(table, partial / f"part-{i:05d}.parquet")
    return directory


def plan_seconds(corpus: Path) -> float:
    """The job's own plan of the corpus (`python -m job --check`: list, footers, shards), as it logs it."""
    argv = [sys.executable, "-m", "job", "--corpus", str(corpus), "--check"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    planned = re.search(r"planned in ([\d.]+)s", done.stdout)
    if planned is None:
        raise RaybakeError(f"the job's check of {corpus} did not say its plan time: {done.stdout[-500:]!r}")
    return float(planned.group(1))


def plain_loop(corpus: Path, model: str, *, threads: int) -> dict[str, Any]:
    """The loop a user writes by hand: read everything, batches of 256, pad, run, mean-pool."""
    code = f"""
import json, time, torch
from transformers import AutoModel, AutoTokenizer
torch.set_num_threads({threads})
tok, model = AutoTokenizer.from_pretrained({model!r}), AutoModel.from_pretrained({model!r}).eval()
started, n = time.perf_counter(), 0
with open({str(corpus)!r}) as f, torch.inference_mode():
    texts = [json.loads(line)["text"] for line in f]
    for i in range(0, len(texts), {BASELINE_BATCH}):
        b = tok(texts[i : i + {BASELINE_BATCH}], padding=True, truncation=True, return_tensors="pt")
        h = model(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        n += len(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy())
print(json.dumps({{"docs": n, "seconds": time.perf_counter() - started}}))
"""
    # Its own process: its memory and threads do not mix with the bench's.
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "docs_per_s": round(result["docs"] / result["seconds"], 1)}


def invoke_submit(
    corpus: Path, output: Path, model: str, *, name: str, env: dict[str, str], job_args: str = ""
) -> dict[str, Any]:
    """The whole `invoke submit`, timed from outside, as a user waits for it."""
    argv = [sys.executable, "-m", "invoke", "submit", "--corpus", str(corpus), "--output", str(output)]
    argv += ["--model", model, "--name", name, "--job-args", job_args]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RaybakeError(f"benchmark submit {name} failed: {(done.stdout + done.stderr)[-2000:]}")
    manifest = json.loads((output / "manifest.json").read_text())
    docs = manifest["counts"]["documents"]
    return {
        "docs": docs,
        "wall_s": round(wall, 2),
        "docs_per_s": round(docs / wall, 1),
        "ok": manifest["counts"]["ok"],
        "unique_sources": _unique_sources(output),
        "plan_s": manifest["timings"]["plan_seconds"],
        "read_amplification": manifest["bytes"]["read_amplification"],
        "shards": manifest["shards"]["total"],
        "peak_worker_rss_mib": max(w["peak_rss_mib"] for w in manifest["workers"]),
        "worker_seconds": [w["seconds"] for w in manifest["workers"]],
    }


def _unique_sources(output: Path) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    return pc.count_distinct(pq.read_table(output / "parts", columns=["source"]).column("source")).as_py()


def ray_trivial_submit(settings: Settings, env: dict[str, str]) -> float:
    """Ray's own CLI, `ray job submit -- python -c 'print(1)'`, with the embedded head's token."""
    from raybake.clusters import embedded

    head = embedded.ours(settings)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": head.token_file} if head else {}
    # The `ray` beside this interpreter: a venv's invoke run by its path has no venv on PATH.
    ray = str(Path(sys.executable).parent / "ray")
    argv = [ray, "job", "submit", "--address", url(settings), "--", "python", "-c", "print(1)"]
    started = time.perf_counter()
    subprocess.run(argv, env={**env, **auth}, capture_output=True, check=True)
    return round(time.perf_counter() - started, 2)


def run(*, docs: int, threads: int, out: Path, settings: Settings) -> dict[str, Any]:
    from raybake.clusters.local import LocalBackend

    LocalBackend(settings).ready()
    env = {**os.environ}
    model = make_tiny_model(out / "tiny-model")
    one = make_one_file(out / "corpora" / f"one-{docs}" / "docs.jsonl", docs)
    small = make_one_file(out / "corpora" / f"one-{docs // 10}" / "docs.jsonl", docs // 10)
    many = make_many_files(out / "corpora" / f"many-{docs}", docs, SCALE_FILES)
    parquet = make_many_parquet(out / "corpora" / f"parquet-{docs}", docs, SCALE_FILES)
    stamp = int(time.time())
    report_file = out / f"scale-report-{stamp}.json"
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "threads": threads, "load_before": os.getloadavg()[0]},
        "docs": docs,
    }
    # Warm the local Ray once (the first job on a fresh head pays for its runtime env).
    invoke_submit(EXAMPLE, out / "outputs" / f"warm-{stamp}", model, name=f"warm-{stamp}", env=env)
    # Each corpus on workers of its own (no warm ones: their peak RSS would be an earlier job's),
    # in shards of one size, so that the peak RSS of a tenth and of the whole compare alike.
    fresh = {**env, "INVOKE_RAYBAKE_LOCAL_KEEP_WARM_S": "0"}
    for corpus, label in ((small, "one_file_tenth"), (one, "one_file"), (many, "many_files")):
        base = plain_loop(one if label == "many_files" else corpus, model, threads=threads)
        output, name = out / "outputs" / f"{label}-{stamp}", f"scale-{label}-{stamp}"
        got = invoke_submit(corpus, output, model, name=name, env=fresh, job_args=f"--split-bytes {SCALE_SPLIT}")
        got["ratio"] = round(got["docs_per_s"] / base["docs_per_s"], 2)
        report[label] = {"plain_loop": base, "raybake": got}
        report_file.write_text(json.dumps(report, indent=2))  # after each round: a cut run keeps them
    report["many_parquet_plan_s"] = plan_seconds(parquet)
    trivial = [ray_trivial_submit(settings, env) for _ in range(3)]
    # MiniLM's first job loads it (the tiny model's warm workers end for it); the next ones find
    # its workers warm, as a user's second submit of the day does.
    example = [
        invoke_submit(EXAMPLE, out / "outputs" / f"fixed-{stamp}-{i}", model_dir(), name=f"fixed-{stamp}-{i}", env=env)
        for i in range(3)
    ]
    report["fixed_cost"] = {
        "ray_job_submit_trivial_s": min(trivial),
        "invoke_submit_example_cold_s": example[0]["wall_s"],
        "invoke_submit_example_s": min(e["wall_s"] for e in example[1:]),
    }
    report["machine"]["load_after"] = os.getloadavg()[0]
    report_file.write_text(json.dumps(report, indent=2))
    return report


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"machine: {report['machine']}",
        "| corpus | docs | plain loop docs/s | invoke submit docs/s | ratio | plan s | read ampl. "
        "| peak worker RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in ("one_file_tenth", "one_file", "many_files"):
        base, got = report[label]["plain_loop"], report[label]["raybake"]
        lines.append(
            f"| {label} | {got['docs']} | {base['docs_per_s']} | {got['docs_per_s']} | {got['ratio']} | "
            f"{got['plan_s']} | {got['read_amplification']} | {got['peak_worker_rss_mib']} |"
        )
    lines.append(f"plan of the same documents as {SCALE_FILES} Parquet files: {report['many_parquet_plan_s']}s")
    fixed = report["fixed_cost"]
    lines.append(
        f"fixed cost: invoke submit of the 41-document example {fixed['invoke_submit_example_s']}s with its "
        f"workers warm ({fixed['invoke_submit_example_cold_s']}s cold), "
        f"ray job submit of print(1) {fixed['ray_job_submit_trivial_s']}s"
    )
    return "\n".join(lines)
