"""specgen's CPU kernels, behind one door: the few-row matrix product (`linear`, `NarrowLinear`, switched on for a
model by `narrow_matmuls`) and the fused Hydra++ draft rounds (`KernelRound`, `KernelStack`), built from `csrc/`
on first use (`build`). Every entry point falls back to PyTorch where the kernels do not apply or cannot be built:
`linear` computes by PyTorch's products, and `draft_round`/`stack_probs` return None, for the drafter to run its
PyTorch round."""
from __future__ import annotations

from .build import library
from .narrow import FEW_ROWS, KERNEL_ROWS, NarrowLinear, half_linear, linear, narrow_matmuls
from .rounds import KernelRound, KernelStack, Plan


def draft_round(heads, tables: dict | None) -> KernelRound | None:
    """The kernel's draft rounds for these Hydra++ heads (their drafting copy, with its token tables), or None
    where the kernel does not apply to them or cannot be built: then the drafter drafts in PyTorch."""
    return KernelRound.for_heads(heads, tables)


def stack_probs(round: KernelRound | None, stack) -> KernelStack | None:
    """The kernel for a residual stack sharing a `draft_round`'s LM head (Hawk's row-up vertical head), or None
    (no kernel round, or a stack it does not take): then the drafter computes its distributions in PyTorch."""
    return None if round is None else KernelStack.for_stack(round, stack)


__all__ = ["FEW_ROWS", "KERNEL_ROWS", "KernelRound", "KernelStack", "NarrowLinear", "Plan", "draft_round",
           "half_linear", "library", "linear", "narrow_matmuls", "stack_probs"]
