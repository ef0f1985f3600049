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

import job  # noqa: F401 - the job code must import with the image's dependencies


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
    if os.environ.get("VARIANT") == "cuda" and not torch.version.cuda:
        problems.append(f"the cuda variant has a torch without CUDA ({torch.__version__!r}); check TORCH_INDEX_URL")
    for problem in problems:
        print(f"raybake image check: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
