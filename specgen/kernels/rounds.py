"""Hydra++ draft rounds by specgen's CPU kernel (`csrc/draft.c`).

A PyTorch draft round (`hydra_round`) issues some 150 small tensor operations; on a CPU each costs microseconds of
dispatch whatever its size, so a round over a few megabytes of fp16 weights took about 1.3 ms, more than a whole
verification costs beyond a decode step. The kernel does the same round in one call: the prefix attention on the
newest window state, every head's context inputs, then each level's heads and children, with activations in fp32
and weights read in the drafting precision (fp16 on a CPU by default).

It serves any sparse tree, with the top guesses or draws from the heads after the decode's temperature (not after
top-k or top-p, which the PyTorch round applies); such decodes draft in PyTorch. Same guesses from the same noise up
to float rounding (the tests compare the two), and the drafted distributions are returned for the acceptance test,
so what is accepted stays exact either way. SPECGEN_CPU_KERNEL=0 (or `compile_draft` set either way) drafts in
PyTorch."""
from __future__ import annotations

import ctypes
from typing import NamedTuple

import torch

from .. import config
from . import build


class Plan(NamedTuple):
    """A draft tree as the kernel reads it: per level (parents, ranks, nodes) in `shape`, then every level's
    parents' paths (slots), picks and node slots laid end to end; the tree's size, and its parents in all (the
    rows of a round's noise)."""

    levels: int
    shape: torch.Tensor
    ancestors: torch.Tensor
    picks: torch.Tensor
    slots: torch.Tensor
    size: int
    parents: int


class _Weights(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int64) for n in ("dim", "attention_heads", "window", "vocab", "num_heads", "blocks",
                                                "half")]
                + [("eps1", ctypes.c_float), ("eps2", ctypes.c_float)]
                + [(n, ctypes.c_void_p) for n in ("norm1", "norm2", "wq", "wkv", "wo", "w1", "b1", "w2", "b2", "wc",
                                                   "bc", "tables", "sw", "sb", "lm")])


def _fixed(t: torch.Tensor) -> torch.Tensor:
    """A weight as the C code reads it: detached and contiguous (kept alive by whoever holds its pointer)."""
    return t.detach().contiguous()


def _pointers(tensors: list[torch.Tensor]):
    """A C array of the tensors' data pointers (`const void *const *`)."""
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))


def _declare(lib):
    if not hasattr(lib, "_specgen_draft"):
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.specgen_hydra_memory.argtypes = [p, p, p, i64, ctypes.c_int]
        lib.specgen_hydra_tree.argtypes = [p, i64, p, p, p, p, i64, p, p, p, p, i64, p, ctypes.c_float, p, p, p, p,
                                           ctypes.c_int]
        lib.specgen_stack_probs.argtypes = [p, p, p, i64, p, i64, ctypes.c_float, p, p, ctypes.c_int]
        lib.specgen_hydra_memory.restype = lib.specgen_hydra_tree.restype = ctypes.c_int  # 1: out of memory
        lib.specgen_stack_probs.restype = ctypes.c_int
        lib._specgen_draft = True
    return lib


class KernelRound:
    """The kernel bound to one set of Hydra++ heads (their drafting copy: fp16 or fp32, on the CPU, with token
    tables). `for_heads` says whether it applies; `memory` and `round` do the work of `PrefixAttention.memory` and
    `hydra_round` for fp32 window states."""

    def __init__(self, lib, heads, tables: dict):
        self.lib, self.heads = _declare(lib), heads
        prefix, d = heads.prefix, heads.config["hidden_size"]
        # every tensor the struct points into, kept alive (and contiguous) with it
        self._keep = keep = {k: _fixed(v) for k, v in {
            "norm1": prefix.norm1.weight, "norm2": prefix.norm2.weight, "wq": prefix.qkv.weight[:d],
            "wkv": prefix.qkv.weight[d:], "wo": prefix.out.weight, "w1": prefix.mlp[0].weight, "b1": prefix.mlp[0].bias,
            "w2": prefix.mlp[2].weight, "b2": prefix.mlp[2].bias, "wc": tables["context"], "bc": tables["bias"],
            "lm": heads.lm_head.weight}.items()}
        blocks = [b for stack in heads.stacks for b in stack.blocks]  # head i's block l at i * blocks + l
        self._lists = [[_fixed(t) for t in tables["tokens"]], [_fixed(b.weight) for b in blocks],
                       [_fixed(b.bias) for b in blocks]]
        self._tables, self._sw, self._sb = map(_pointers, self._lists)
        eps = lambda norm: norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps  # noqa: E731
        self.weights = _Weights(
            dim=d, attention_heads=prefix.heads, window=prefix.window, vocab=heads.lm_head.weight.shape[0],
            num_heads=heads.num_heads, blocks=len(heads.stacks[0].blocks), half=int(keep["lm"].dtype == torch.float16),
            eps1=eps(prefix.norm1), eps2=eps(prefix.norm2),
            **{k: v.data_ptr() for k, v in keep.items()},
            tables=ctypes.cast(self._tables, ctypes.c_void_p), sw=ctypes.cast(self._sw, ctypes.c_void_p),
            sb=ctypes.cast(self._sb, ctypes.c_void_p))
        self._ref = ctypes.byref(self.weights)

    @classmethod
    def for_heads(cls, heads, tables: dict | None) -> "KernelRound | None":
        """The kernel for these Hydra++ heads where it applies: on the CPU, fp16 or fp32 weights (tables included),
        token tables built over a vocabulary the embeddings and LM head share, the layers draft.c knows (bias-free
        attention and LM head, the same number of residual blocks in every head), and the library built
        (`build.library`, unless SPECGEN_CPU_KERNEL=0); else None."""
        if not config.CPU_KERNEL or tables is None:
            return None
        w = heads.lm_head.weight
        if w.device.type != "cpu" or w.dtype not in (torch.float16, torch.float32):
            return None
        prefix = heads.prefix
        tensors = [*heads.parameters(), w, heads.embed.weight, tables["context"], tables["bias"], *tables["tokens"]]
        if any(t.dtype != w.dtype or t.device != w.device for t in tensors):
            return None
        if heads.embed.weight.shape[0] != w.shape[0]:  # the tables' slots are vocabulary-sized blocks
            return None
        blocks = {len(s.blocks) for s in heads.stacks}
        if (prefix.qkv.bias is not None or prefix.out.bias is not None or heads.lm_head.bias is not None
                or len(blocks) != 1 or any(b.bias is None for s in heads.stacks for b in s.blocks)
                or prefix.mlp[0].bias is None or prefix.mlp[2].bias is None
                or heads.config["hidden_size"] % prefix.heads):
            return None
        lib = build.library()
        return None if lib is None else cls(lib, heads, tables)

    def memory(self, states: torch.Tensor) -> torch.Tensor:
        """Keys and values [..., 2 dim] (fp32) of window states [..., dim]."""
        x = states.to("cpu", torch.float32).contiguous()
        out = torch.empty(*x.shape[:-1], 2 * x.shape[-1], dtype=torch.float32)
        if self.lib.specgen_hydra_memory(self._ref, x.data_ptr(), out.data_ptr(), x.numel() // x.shape[-1],
                                         torch.get_num_threads()):
            raise MemoryError("specgen's draft kernel ran out of memory")
        return out

    @staticmethod
    def plan(levels: list[tuple]) -> "Plan":
        """`HydraDrafter.levels`' tree as the kernel reads it (`Plan`)."""
        shape, ancestors, picks, slots = [], [], [], []
        for d, (nodes, anc, pick, ranks) in enumerate(levels):
            paths = [list(range(d + 1))] if anc is None else anc.tolist()
            where = list(range(nodes.start, nodes.stop)) if isinstance(nodes, slice) else nodes.tolist()
            shape += [len(paths), ranks, len(where)]
            ancestors += [s for path in paths for s in path]
            picks += list(range(len(paths) * ranks)) if pick is None else pick.tolist()
            slots += where
        as_tensor = lambda t: torch.tensor(t, dtype=torch.long)  # noqa: E731
        return Plan(len(levels), *map(as_tensor, (shape, ancestors, picks, slots)), len(slots), sum(shape[0::3]))

    def round(self, plan: "Plan", newest: torch.Tensor, memory: torch.Tensor, valid: torch.Tensor,
              root: torch.Tensor, noise: torch.Tensor | None, temperature: float, blocked: torch.Tensor | None):
        """One round over the tree `plan`: newest [n, dim] and memory [n, window, 2 dim] (fp32), valid [n, window]
        bool, root [n]; noise [n, the levels' parents, vocab] (Exp(1), drawn children) or None (top children).
        Returns, in node order, tokens [n, nodes], whether each is a real guess [n, nodes], and, with noise, the
        distributions they were drawn from [n, nodes, vocab] (`hydra_round`'s outputs)."""
        levels, shape, ancestors, picks, slots, size, parents = plan
        n, vocab, d = newest.shape[0], self.weights.vocab, self.weights.dim
        # the C code trusts these shapes: check them here (a wrong one would read past a buffer)
        if (newest.shape != (n, d) or memory.shape != (n, self.weights.window, 2 * d) or valid.shape != memory.shape[:2]
                or root.shape != (n,) or noise is not None and noise.shape != (n, parents, vocab)
                or blocked is not None and blocked.shape != (vocab,)):
            raise ValueError(f"draft kernel inputs of unexpected shapes: {newest.shape}, {memory.shape}, "
                             f"{valid.shape}, {root.shape}, {None if noise is None else noise.shape}")
        cpu32 = lambda t: None if t is None else t.to("cpu", torch.float32).contiguous()  # noqa: E731
        newest, memory, noise = cpu32(newest), cpu32(memory), cpu32(noise)
        valid, root = valid.to("cpu", torch.bool).contiguous(), root.to("cpu", torch.long).contiguous()
        blocked = None if blocked is None else blocked.to("cpu", torch.bool).contiguous()
        tokens = torch.empty(n, size + 1, dtype=torch.long)
        ok = torch.empty(n, size, dtype=torch.bool)
        q = None if noise is None else torch.empty(n, size, vocab, dtype=torch.float32)
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
        if self.lib.specgen_hydra_tree(self._ref, n, ptr(newest), ptr(memory), ptr(valid), ptr(root), levels,
                                       ptr(shape), ptr(ancestors), ptr(picks), ptr(slots), size, ptr(noise),
                                       float(temperature), ptr(blocked), ptr(tokens), ptr(ok), ptr(q),
                                       torch.get_num_threads()):
            raise MemoryError("specgen's draft kernel ran out of memory")
        return tokens[:, 1:], ok, q


class KernelStack:
    """A residual stack that shares a `KernelRound`'s LM head (Hawk's row-up vertical head, in the same drafting
    copy), run by the kernel: `probs` gives softmax(LM head(stack(x)) / temperature) over the tokens not blocked,
    what `vertical_logits` and `Sampling.probs` give, up to float rounding."""

    def __init__(self, round: KernelRound, stack):
        self.round = round
        self._lists = [[_fixed(b.weight) for b in stack.blocks], [_fixed(b.bias) for b in stack.blocks]]
        self._sw, self._sb = map(_pointers, self._lists)

    @classmethod
    def for_stack(cls, round: KernelRound, stack) -> "KernelStack | None":
        """The kernel for this stack where it applies: [dim, dim] blocks with [dim] biases in the round's precision
        and device (so they share its LM head); else None."""
        lm, d = round._keep["lm"], round.weights.dim
        for b in stack.blocks:
            if (b.bias is None or b.weight.shape != (d, d) or b.bias.shape != (d,)
                    or any(t.dtype != lm.dtype or t.device != lm.device for t in (b.weight, b.bias))):
                return None
        return cls(round, stack)

    def probs(self, states: torch.Tensor, temperature: float, blocked: torch.Tensor | None) -> torch.Tensor:
        """states [..., dim] -> fp32 distributions [..., vocab]."""
        w = self.round.weights
        if states.shape[-1] != w.dim or blocked is not None and blocked.shape != (w.vocab,):
            raise ValueError(f"kernel stack inputs of unexpected shapes: {states.shape}, "
                             f"{None if blocked is None else blocked.shape}")
        x = states.to("cpu", torch.float32).contiguous()
        blocked = None if blocked is None else blocked.to("cpu", torch.bool).contiguous()
        out = torch.empty(*x.shape[:-1], w.vocab, dtype=torch.float32)
        if self.round.lib.specgen_stack_probs(self.round._ref, self._sw, self._sb, len(self._lists[0]), x.data_ptr(),
                                              x.numel() // w.dim, float(temperature),
                                              None if blocked is None else blocked.data_ptr(), out.data_ptr(),
                                              torch.get_num_threads()):
            raise MemoryError("specgen's draft kernel ran out of memory")
        return out.to(states.device)
