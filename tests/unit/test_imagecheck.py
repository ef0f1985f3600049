"""docker/imagecheck.py's CUDA rule: a cuda image's torch has CUDA, and the base image's."""

from __future__ import annotations

import importlib.util

import pytest

from raybake.versions import ROOT


@pytest.fixture(scope="module")
def imagecheck():
    spec = importlib.util.spec_from_file_location("imagecheck", ROOT / "docker" / "imagecheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("torch", "cuda", "base", "problem"),
    [
        ("2.13.0+cpu", None, "12.8.1", "without CUDA"),
        ("2.13.0", "13.0", "12.8.1", "built for CUDA 13.0, the base image has CUDA 12.8.1"),
        ("2.13.0+cu128", "12.8", "12.8.1", None),
        ("2.13.0", "12.8", "", None),
    ],
)
def test_cuda_problems(imagecheck, torch, cuda, base, problem):
    found = imagecheck.cuda_problems(torch, cuda, base)
    assert (problem in found[0]) if problem else found == []
