"""The image's self-check, run at build time and by the tests: the stack imports and matches its pins.

A CUDA image whose torch was built without CUDA would run every job on the CPU without saying
so; the check fails the build instead.
"""

from __future__ import annotations

import os
import platform
import sys

import ray
import torch
import transformers

import job.pipelines  # noqa: F401 - the job code, its model libraries included, must import with the image's dependencies


def cuda_problems(torch_version: str, torch_cuda: str | None, base_cuda: str) -> list[str]:
    """A CPU torch, or a torch built for another CUDA than the base image's (NVIDIA's images set
    CUDA_VERSION): the first runs every job on the CPU, the second needs another driver and
    brings a second CUDA on top of the base's."""
    if not torch_cuda:
        return [f"the cuda variant has a torch without CUDA ({torch_version!r}); check TORCH_INDEX_URL"]
    if base_cuda and base_cuda.split(".")[:2] != torch_cuda.split(".")[:2]:
        return [
            f"torch {torch_version!r} is built for CUDA {torch_cuda}, the base image has CUDA {base_cuda}: "
            "set raybake.torch_index_cuda to PyTorch's index for the base's CUDA"
        ]
    return []


def main() -> int:
    print(
        f"raybake image check: python {platform.python_version()} ray {ray.__version__} "
        f"torch {torch.__version__} (cuda {torch.version.cuda}) transformers {transformers.__version__}",
        flush=True,
    )
    problems = []
    expected_ray = os.environ.get("RAY_VERSION")
    if expected_ray and ray.__version__ != expected_ray:
        problems.append(f"ray is {ray.__version__!r}, the pin is {expected_ray!r}")
    if os.environ.get("VARIANT") == "cuda":
        problems.extend(cuda_problems(torch.__version__, torch.version.cuda, os.environ.get("CUDA_VERSION", "")))
    for problem in problems:
        print(f"raybake image check: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
