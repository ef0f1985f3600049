"""`invoke bench-start`'s parts that need no cluster: the pip environment it times, and its report."""

from __future__ import annotations

from benchmarks import startup
from raybake.versions import pins


def test_the_pip_environment_installs_the_pinned_torch_and_transformers_anew():
    env = startup.pip_runtime_env()["pip"]
    assert env["packages"] == [f"torch=={pins()['torch']}", f"transformers=={pins()['transformers']}"]
    # Without it Ray's virtualenv would see the image's own packages and install nothing.
    assert "--ignore-installed" in env["pip_install_options"]


def test_the_probe_imports_both_libraries_on_a_worker():
    assert "import ray" in startup.PROBE and "torch" in startup.PROBE and "transformers" in startup.PROBE
    compile(startup.PROBE, "<probe>", "exec")


def test_the_summary_reports_every_figure_with_its_machine():
    report = {
        "machine": "x86_64, 2 CPUs",
        "cluster": "head + 2 workers (1 CPU each), local Docker",
        "baked_seconds": [4.1, 3.9, 4.0],
        "baked_median_seconds": 4.0,
        "pip_cold_seconds": 141.2,
        "pip_cached_seconds": 6.8,
        "image_bytes": {"cpu": 2_330_000_000},
    }
    text = startup.summary(report)
    assert "x86_64, 2 CPUs" in text
    assert "baked into the image: 4.0 s (median of 3)" in text
    assert "cold nodes:       141.2 s" in text and "cached env:       6.8 s" in text
    assert "image size: cpu 2.33 GB" in text
    assert "no image on this engine" in startup.summary({**report, "image_bytes": {}})
