"""Matrix products for small batches of rows on the CPU.

A decode step multiplies one row by every weight matrix (two with classifier-free guidance), and a verification
multiplies a handful (2-64 tree nodes). Both are bound by reading the weights, so the premise of speculation is
that the handful costs about what the one row costs. PyTorch's `linear` on the CPU does not keep that promise: on
the AVX2 AMD EPYC these benchmarks ran on, MKL's `x @ W.T` for 2-5 rows took 1.5-1.9x as long as for one row.

Two products replace it here, for inference in fp32 on the CPU:
- specgen's own kernel (`specgen/csrc/rows.c`), built with the system C compiler on first use and kept in
  `~/.cache/specgen` (or `$SPECGEN_CACHE`). Each weight row is read once and multiplied with up to 8 rows of
  activations while they sit in the L1 cache, on torch's threads, prefetching the weights ahead of the reads.
  Every output is summed in one fixed order, so a row's products do not depend on the rows computed with it.
  Whole forwards of each product side by side: `scripts/bench_matmul.py` (README, "How it works").
- Where the kernel cannot be built (no C compiler, or `SPECGEN_CPU_KERNEL=0`), `W @ x.T` (then transposed back)
  for 2-64 rows, which ran at about the one-row cost for 2-16 rows; one row keeps `linear`.

`narrow_matmuls` switches a model's `nn.Linear` layers to these products. Set SPECGEN_CPU_MATMUL=0 (or
`specgen.cpu.ON = False`) to keep PyTorch's own `linear` everywhere.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from .utils import cpu_info

FEW_ROWS = 64  # above this a plain `linear` (a real matrix product) was as fast or faster
KERNEL_ROWS = 24  # the kernel was faster than `W @ x.T` up to 24-28 rows on the image LM, even at 32
ON = os.environ.get("SPECGEN_CPU_MATMUL", "1") != "0"  # read at call time too, so a benchmark can compare both
KERNEL = os.environ.get("SPECGEN_CPU_KERNEL", "1") != "0"  # specgen's kernel where it builds (else `W @ x.T`)
CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
SOURCES = ["rows.c", "draft.c"]  # built into one library (with the header they share)
HEADERS = ["vec.h"]
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC"]
LIBS = ["-lm"]  # (after the sources)
_LIB: list = []  # [the loaded library, or None where it could not be built]


def library():
    """specgen's CPU kernels (`specgen/csrc`: the few-row product, and the Hydra++ draft round of draft.c) as a
    ctypes library, built on first use for this machine (-march=native, so the file's name carries the compiler,
    the CPU's flags and the sources' hash) and loaded once per process; None where it cannot be built, with one
    warning saying why and what runs instead."""
    if not _LIB:
        _LIB.append(_load())
    return _LIB[0]


def kernel():
    """The few-row product (`specgen/csrc/rows.c`: y = x @ W.T + b in fp32) as a ctypes function, or None where
    the library cannot be built (`library`)."""
    lib = library()
    return None if lib is None else lib.specgen_rows


def _load():
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return _unavailable("no C compiler found (install gcc, or set CC)")
    try:
        source = b""
        for name in SOURCES + HEADERS:
            with open(os.path.join(CSRC, name), "rb") as f:
                source += f.read() + b"\0"
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return _unavailable(f"{type(e).__name__}: {e}")
    flags = cpu_info("flags") or cpu_info("Features")  # x86, ARM
    if flags is None:
        return _unavailable("no CPU flags in /proc/cpuinfo to key the -march=native build on")
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS + LIBS).encode(), version.encode(), flags.encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    cache = os.environ.get("SPECGEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "specgen")
    path = os.path.join(cache, f"kernels-{key}.so")
    if not os.path.exists(path):
        try:
            os.makedirs(cache, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)  # built aside, then moved in: never half a file
            os.close(fd)
            done = subprocess.run([cc, *FLAGS, "-o", tmp, *(os.path.join(CSRC, n) for n in SOURCES), *LIBS],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                os.unlink(tmp)
                return _unavailable(f"{cc} failed: {done.stderr.strip()[-500:]}")
            os.replace(tmp, path)
        except (OSError, subprocess.SubprocessError) as e:
            return _unavailable(f"{type(e).__name__}: {e}")
    try:
        lib = ctypes.CDLL(path)  # torch is loaded, so its OpenMP runtime (and thread pool) is shared
    except OSError as e:
        return _unavailable(f"{path} did not load ({e})")
    for name in ("specgen_rows", "specgen_rows_h"):
        getattr(lib, name).argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 3 + [ctypes.c_int]
        getattr(lib, name).restype = None
    # (draft.c's functions take a weights struct: specgen/drafters/native.py declares them)
    return lib


def _unavailable(why: str) -> None:
    warnings.warn(f"specgen's CPU matmul kernel is unavailable ({why}); using PyTorch's products instead (same "
                  f"results up to rounding, slower decoding on the CPU). Set SPECGEN_CPU_KERNEL=0 to skip the "
                  f"attempt.", stacklevel=3)
    return None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear` for 1-64 rows on the CPU without gradients, by specgen's kernel (or `W @ x.T` for 2-64 rows where
    it is unavailable); same result up to rounding. fp32 weights and inputs; or fp16 weights (and bias) with fp32
    or fp16 inputs, by the kernel's fp16-weight product, which computes in fp32 and returns the input's dtype
    (PyTorch's own fp16 product on a CPU took several times as long)."""
    rows = x.numel() // weight.shape[1]
    half = weight.dtype == torch.float16
    if (not ON or rows < 1 or rows > FEW_ROWS or x.shape[-1] != weight.shape[1] or x.device.type != "cpu"
            or weight.device.type != "cpu" or x.dtype != torch.float32 and not (half and x.dtype == torch.float16)
            or weight.dtype != torch.float32 and not half  # e.g. moved to CUDA or cast after the switch
            or torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad)
            or torch.compiler.is_compiling()):
        if half and x.dtype == torch.float32 and x.device == weight.device:  # the fp32 input this takes
            return half_linear(x, weight, bias)
        return F.linear(x, weight, bias)
    inputs = x.reshape(rows, weight.shape[1])
    lib = library() if KERNEL and rows <= KERNEL_ROWS else None
    fn = None if lib is None else lib.specgen_rows_h if half else lib.specgen_rows
    if fn is not None and weight.is_contiguous() and (bias is None or bias.dtype == weight.dtype
                                                      and bias.device.type == "cpu" and bias.is_contiguous()):
        inputs = inputs.float().contiguous()
        y = torch.empty(*x.shape[:-1], weight.shape[0], dtype=torch.float32)
        fn(inputs.data_ptr(), weight.data_ptr(), None if bias is None else bias.data_ptr(), y.data_ptr(), rows,
           weight.shape[1], weight.shape[0], torch.get_num_threads())
        return y.to(x.dtype)
    if half:  # more rows than the kernel takes, or no kernel
        return half_linear(x, weight, bias)
    if rows < 2:
        return F.linear(x, weight, bias)
    y = (weight @ inputs.t()).t().contiguous()  # attention kernels want it contiguous
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], weight.shape[0])


def half_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """PyTorch's fp16 product for fp16 weights, in and out of the input's dtype (fp32 or fp16)."""
    return F.linear(x.to(weight.dtype), weight, bias).to(x.dtype)


class NarrowLinear(nn.Linear):
    """`nn.Linear` computing 1-64 rows by `linear` above; same parameters, same state dict, same results up to
    rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def narrow_matmuls(module: nn.Module) -> nn.Module:
    """Switch every plain `nn.Linear` of a CPU fp32 or fp16 module to `NarrowLinear` (in place; returns the
    module). Modules on another device or dtype, and subclasses of `nn.Linear`, are left alone."""
    for m in module.modules():
        if (type(m) is nn.Linear and m.weight.device.type == "cpu"
                and m.weight.dtype in (torch.float32, torch.float16)):
            m.__class__ = NarrowLinear
    return module
