"""Matrix products for small batches of rows on the CPU.

A decode step multiplies one row by every weight matrix, and a verification multiplies a handful (2-64 tree
nodes). Both are bound by reading the weights, so the premise of speculation is that the handful costs about what
the one row costs. PyTorch's `linear` on the CPU does not keep that promise everywhere: on the AVX2 AMD EPYC these
benchmarks ran on, MKL's `x @ W.T` for 2-5 rows took 1.5-1.9x as long as for one row (a whole 5-token forward of
the 10.8M speech LM: 12.0 ms against 9.1 ms for one token). Computing the same product as `W @ x.T` (then
transposing the result back) ran at about the one-row cost for 2-16 rows (that forward: 9.0-9.6 ms).
`narrow_matmuls` switches a model's `nn.Linear` layers to that form for 2-64 rows in fp32 on the CPU; one row
(an `ar` step) and everything else keep `linear`, which was as fast for one row as any other form tried
(`scripts/bench_matmul.py`). The products are the same up to float rounding. Set SPECGEN_CPU_MATMUL=0 (or
`specgen.cpu.ON = False`) to keep PyTorch's own `linear` everywhere.
"""
from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

FEW_ROWS = 64  # above this a plain `linear` (a real matrix product) was as fast or faster
ON = os.environ.get("SPECGEN_CPU_MATMUL", "1") != "0"  # read at call time too, so a benchmark can compare both


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, computed as `W @ x.T` for 2-64 rows in fp32 on the CPU; same result up to rounding."""
    rows = x.numel() // weight.shape[1]
    if (not ON or rows < 2 or rows > FEW_ROWS or x.dtype != torch.float32 or x.device.type != "cpu"
            or torch.is_grad_enabled() and weight.requires_grad):  # e.g. moved to CUDA after the switch
        return F.linear(x, weight, bias)
    y = (weight @ x.reshape(rows, weight.shape[1]).t()).t().contiguous()  # attention kernels want it contiguous
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], weight.shape[0])


class NarrowLinear(nn.Linear):
    """`nn.Linear` computing 2-64 rows as `W @ x.T`; same parameters, same state dict, same results up to rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def narrow_matmuls(module: nn.Module) -> nn.Module:
    """Switch every plain `nn.Linear` of a CPU fp32 module to `NarrowLinear` (in place; returns the module).
    Modules on another device or dtype, and subclasses of `nn.Linear`, are left alone."""
    for m in module.modules():
        if type(m) is nn.Linear and m.weight.device.type == "cpu" and m.weight.dtype == torch.float32:
            m.__class__ = NarrowLinear
    return module
