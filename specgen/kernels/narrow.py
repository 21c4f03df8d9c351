"""Matrix products for small batches of rows on the CPU.

A decode step multiplies one row by every weight matrix (two with classifier-free guidance), and a verification
multiplies a handful (2-64 tree nodes). Both are bound by reading the weights, so the premise of speculation is
that the handful costs about what the one row costs. PyTorch's `linear` on the CPU does not keep that promise: on
the AVX2 AMD EPYC these benchmarks ran on, MKL's `x @ W.T` for 2-5 rows took 1.5-1.9x as long as for one row.

Two products replace it here, for inference in fp32 on the CPU:
- specgen's own kernel (`specgen/kernels/csrc/rows.c`), built with the system C compiler on first use and kept in
  `~/.cache/specgen` (or `$SPECGEN_CACHE`). Each weight row is read once and multiplied with up to 8 rows of
  activations while they sit in the L1 cache, on torch's threads, prefetching the weights ahead of the reads.
  Every output is summed in one fixed order, so a row's products do not depend on the rows computed with it.
  Whole forwards of each product side by side: `scripts/bench_matmul.py` (README, "How it works").
- Where the kernel cannot be built (no C compiler, or `SPECGEN_CPU_KERNEL=0`), `W @ x.T` (then transposed back)
  for 2-64 rows, which ran at about the one-row cost for 2-16 rows; one row keeps `linear`.

`narrow_matmuls` switches a model's `nn.Linear` layers to these products: an explicit opt-in, which the loaders
take as `narrow=True` (`specgen.loading.load_causal_lm`; the pipelines load so). Set SPECGEN_CPU_MATMUL=0 to keep
PyTorch's own `linear` everywhere (`specgen.config`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .. import config
from . import build

FEW_ROWS = 64  # above this a plain `linear` (a real matrix product) was as fast or faster
KERNEL_ROWS = 24  # the kernel was faster than `W @ x.T` up to 24-28 rows on the image LM, even at 32


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear` for 1-64 rows on the CPU without gradients, by specgen's kernel (or `W @ x.T` for 2-64 rows where
    it is unavailable); same result up to rounding. fp32 weights and inputs; or fp16 weights (and bias) with fp32
    or fp16 inputs, by the kernel's fp16-weight product, which computes in fp32 and returns the input's dtype
    (PyTorch's own fp16 product on a CPU took several times as long)."""
    rows = x.numel() // weight.shape[1]
    half = weight.dtype == torch.float16
    if (torch.compiler.is_compiling() or not config.CPU_MATMUL
            or rows < 1 or rows > FEW_ROWS or x.shape[-1] != weight.shape[1] or x.device.type != "cpu"
            or weight.device.type != "cpu" or x.dtype != torch.float32 and not (half and x.dtype == torch.float16)
            or weight.dtype != torch.float32 and not half  # e.g. moved to CUDA or cast after the switch
            or torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad)):
        if half and x.dtype == torch.float32 and x.device == weight.device:  # the fp32 input this takes
            return half_linear(x, weight, bias)
        return F.linear(x, weight, bias)
    inputs = x.reshape(rows, weight.shape[1])
    lib = build.library() if config.CPU_KERNEL and rows <= KERNEL_ROWS else None
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
