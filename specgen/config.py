"""specgen's settings from environment variables, all read here:

- SPECGEN_CPU_MATMUL=0: PyTorch's own `linear` everywhere, no few-row products (`specgen.kernels.narrow`).
- SPECGEN_CPU_KERNEL=0: no C kernel (few-row products by `W @ x.T`, draft rounds in PyTorch); no build attempt.
- SPECGEN_CACHE: the folder that keeps the built kernel and converted models such as Gemma 3 270M (default
  $XDG_CACHE_HOME/specgen, else ~/.cache/specgen).
- CC: the C compiler that builds it (default `cc`, else `gcc`, from the PATH).
- SPECGEN_COMPILE_DRAFT=1: Hydra++ draft rounds that no kernel runs are compiled by torch.compile, where the caller
  leaves the backend to specgen.

The two product switches are read once, at import, into `CPU_MATMUL` and `CPU_KERNEL`: every linear layer of a
decode step checks them, and reading the environment there cost 5% of a decode on the CPU. A benchmark that
compares the products sets these attributes (`scripts/bench_matmul.py`). The others are read at call time.
"""
from __future__ import annotations

import os
import shutil


CPU_MATMUL = os.environ.get("SPECGEN_CPU_MATMUL", "1") != "0"  # narrow layers compute few rows by specgen's products
CPU_KERNEL = os.environ.get("SPECGEN_CPU_KERNEL", "1") != "0"  # specgen's C kernel where it builds and applies


def cache_dir() -> str:
    """The folder that keeps built kernels and converted models."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("SPECGEN_CACHE") or os.path.join(base, "specgen")


def c_compiler() -> str | None:
    """The C compiler to build the kernel with, None where there is none."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def compile_draft() -> bool:
    """Whether PyTorch Hydra++ draft rounds are compiled when the caller does not choose."""
    return os.environ.get("SPECGEN_COMPILE_DRAFT", "0") == "1"
