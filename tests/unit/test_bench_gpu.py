import json
import shutil
from pathlib import Path

import pytest

from benchmarks import gpu as gpubench
from benchmarks import throughput as bench
from job.records import Timings, WorkerInfo
from raybake.errors import RaybakeError

PHASE_KEYS = {"read": 1.0, "tokenize": 2.0, "compute": 6.0, "write": 0.5, "wait": 0.5}


def manifest(workers: list[WorkerInfo], *, processing: float | None = 10.0, compute: float | None = 9.0) -> tuple:
    """What feed() reads of a manifest: its timings and its workers."""
    timings = Timings(
        started="",
        finished="",
        wall_seconds=12.0,
        plan_seconds=None,
        workers_ready=None,
        processing_seconds=processing,
        compute_seconds=compute,
    )
    return timings, workers


def worker_info(**extra) -> WorkerInfo:
    # What the job records for a worker: who and where, its model load, and where its time went.
    who = {"host": "gpu-0", "pid": 7, "device": "cuda:0", "dtype": "bfloat16", "threads": 8, "model_path": None}
    return WorkerInfo(**{**who, **extra}, revision=None, max_length=256, token_budget=16384, load_seconds=4.2)


def test_feed_reads_per_worker_phase_seconds_beside_the_worker_info():
    fed = gpubench.feed(*manifest([worker_info(seconds=PHASE_KEYS)]))
    assert fed["workers"] == [{"host": "gpu-0", "pid": 7, **PHASE_KEYS}]
    assert fed["wait_fraction"] == 0.05
    assert fed["idle_fraction"] == 0.1


def test_feed_takes_the_slowest_wait_and_the_compute_of_every_worker():
    seconds = {"read": 1, "tokenize": 2, "compute": 6, "write": 0.5, "wait": 3}
    fed = gpubench.feed(*manifest([worker_info(seconds=seconds), worker_info(pid=8, seconds=seconds)]))
    assert [w["wait"] for w in fed["workers"]] == [3.0, 3.0]
    assert fed["wait_fraction"] == 0.3
    # Two workers for 10 s, 9 s of compute between them: idle more than half the time.
    assert fed["idle_fraction"] == 0.55


def test_feed_without_the_phase_fields_says_none_and_never_mistakes_load_for_a_phase():
    fed = gpubench.feed(*manifest([worker_info()]))
    assert fed["workers"] == [{"host": "gpu-0", "pid": 7, **dict.fromkeys(gpubench.PHASES)}]
    assert fed["wait_fraction"] is None
    assert fed["idle_fraction"] == 0.1
    empty = gpubench.feed(*manifest([], processing=None, compute=None))
    assert empty["workers"] == [] and empty["wait_fraction"] is None and empty["idle_fraction"] is None


def rates(tokens_per_s: float, *, mfu: float | None = None, dtype: str = "bfloat16", fed: dict | None = None) -> dict:
    r = {
        "docs": 100,
        "seconds": 2.0,
        "docs_per_s": tokens_per_s / 50,
        "tokens_per_s": tokens_per_s,
        "real_tokens": int(tokens_per_s * 2),
        "padded_tokens": int(tokens_per_s * 3),
        "padding_efficiency": 0.6667,
        "dtype": dtype,
        "tflop_per_s": 1.5,
        "mfu": mfu,
        "min_cosine": 0.9999,
        "docs_per_s_runs": [tokens_per_s / 50],
    }
    if fed is not None:
        r.update(workers=len(fed["workers"]), tokens_per_s_per_worker=tokens_per_s, feed=fed)
    return r


def report(*, wait: float | None, complete: bool = True) -> dict:
    phases = {**PHASE_KEYS, "wait": wait}
    fed = gpubench.feed(*manifest([worker_info(seconds={p: s for p, s in phases.items() if s is not None})]))
    configs = {
        "minilm": {"loop_float32": (1e6, None), "loop_bfloat16": (2e6, None), "raybake": (6e6, None)},
        "bert_base": {"loop_float32": (1e5, 0.02), "loop_bfloat16": (5e5, 0.1), "raybake": (1e6, 0.25)},
    }
    results = {
        key: {
            kind: {
                name: rates(
                    tps, mfu=m, fed=fed if name == "raybake" else None, dtype="float32" if "32" in name else "bfloat16"
                )
                for name, (tps, m) in cfg.items()
            }
            for kind in bench.CORPORA
        }
        for key, cfg in configs.items()
    }
    shape = {"layers": 12, "hidden": 768, "intermediate": 3072}
    r = {
        "device": {
            "type": "cuda",
            "name": "NVIDIA H100 80GB HBM3",
            "count": 1,
            "card": "H100 SXM",
            "peak_bf16_tflops": 989.0,
            "torch": "2.11.0",
            "cuda": "13.0",
            "transformers": "5.17.0",
            "threads": 16,
        },
        "docs": 100,
        "repeats": 1,
        "complete": complete,
        "models": {
            "minilm": {"name": "all-MiniLM-L6-v2", "weights": "random", "shape": shape},
            "bert_base": {"name": "bert-base-sized encoder", "weights": "random", "shape": shape},
        },
        "results": results,
    }
    r["checks"] = gpubench.checks(r)
    return r


def test_checks_hold_each_target_per_corpus():
    rows = gpubench.checks(report(wait=0.5))
    by = {(row["check"], row["corpus"]): row for row in rows}
    assert by[("MiniLM-L6 tokens/s, one worker", "uniform")]["ok"] is True  # 6M >= 5M
    assert by[("bert-base MFU (stretch 45%)", "longtail")]["ok"] is False  # 25% < 30%
    wait = by[("bert_base: model waits for input", "uniform")]
    assert wait["ok"] is True and wait["source"] == "wait" and wait["value"] == 0.05
    assert len(rows) == 2 * 4  # two corpora: MiniLM speed, bert MFU, and the feed of each model


def test_checks_fall_back_to_idle_time_and_say_so_and_none_is_neither_pass_nor_fail():
    r = report(wait=None)
    wait = next(row for row in r["checks"] if row["check"] == "minilm: model waits for input")
    assert wait["source"] == "idle" and wait["value"] == 0.1 and wait["ok"] is True
    r["results"]["bert_base"]["uniform"]["raybake"]["mfu"] = None  # a card without a known peak
    mfu_row = next(row for row in gpubench.checks(r) if row["corpus"] == "uniform" and "MFU" in row["check"])
    assert mfu_row["ok"] is None


def test_summary_prints_every_configuration_the_feed_and_the_targets():
    text = gpubench.summary(report(wait=None, complete=False))
    assert "NVIDIA H100 80GB HBM3 (H100 SXM, dense bf16 peak 989 TFLOP/s)" in text
    assert "INCOMPLETE" in text
    for key in ("minilm", "bert_base"):
        for config in gpubench.CONFIGS:
            assert sum(line.startswith(key) and f" {config} " in line for line in text.splitlines()) == 2
    assert "1.00 / 2.00 / 6.00 / 0.50 / n/a" in text  # no wait field recorded: n/a, not 0
    assert "[PASS] MiniLM-L6 tokens/s, one worker" in text
    assert "[FAIL] bert-base MFU" in text
    assert "(from the idle seconds)" in text


def test_plot_and_report_files(tmp_path):
    r = report(wait=0.5)
    gpubench.write(r, tmp_path)
    gpubench.write(r, tmp_path)
    assert json.loads((tmp_path / "gpu.json").read_text()) == r
    assert [p.name for p in tmp_path.iterdir()] == ["gpu.json"]  # no temporary left behind
    gpubench.plot(r, tmp_path / "gpu.png")
    gpubench.plot(report(wait=None) | {"results": {}}, tmp_path / "empty.png")
    assert (tmp_path / "gpu.png").read_bytes()[:4] == b"\x89PNG"


def test_a_minilm_dir_without_config_is_refused(tmp_path):
    with pytest.raises(RaybakeError, match=r"--minilm '.*' holds no config.json"):
        gpubench.minilm_source(str(tmp_path))


def test_minilm_without_weights_runs_its_architecture_with_random_ones(tmp_path):
    packaged = Path(bench.model_dir())
    assert gpubench.minilm_model(packaged, tmp_path / "unused")["weights"] == "trained"
    # What a GPU machine without the package gets: a config and the tokenizer, no weights. A
    # small config keeps the test fast; the path is the same.
    bare = tmp_path / "bare"
    shutil.copytree(packaged, bare, ignore=shutil.ignore_patterns(*gpubench.WEIGHT_FILES, "config.json"))
    config = {"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2}
    (bare / "config.json").write_text(json.dumps({**config, "intermediate_size": 64}))
    model = gpubench.minilm_model(gpubench.minilm_source(str(bare)), tmp_path / "random")
    assert model["weights"] == "random"
    saved = json.loads((Path(model["path"]) / "config.json").read_text())
    assert (saved["num_hidden_layers"], saved["hidden_size"]) == (2, 32)
    assert (Path(model["path"]) / "model.safetensors").is_file()
    assert (Path(model["path"]) / "tokenizer.json").is_file()
