"""Benchmarks run by `invoke bench` (throughput against plain transformers) and `invoke bench-start` (job start)."""
