"""Hydra++ heads (Ankner et al. 2024, "Hydra: Sequentially-Dependent Draft Heads for Medusa Decoding"):
head i sees the context vector and the embeddings of every token between the hidden state's position and the
one it guesses, so its guess depends on the candidates drafted before it. Hydra++ adds a one-layer prefix
attention over the base hidden states to form the context vector, deeper head MLPs, and training by
distillation from the target's distribution (Sec. 4).

Here the prefix attention looks at the last `window` base hidden states (a sliding window keeps its inference
state to a small buffer per row).

HydraDrafter grows the sparse tree depth by depth, one round per verification: by specgen's CPU kernel where it
applies (`specgen.kernels.draft_round`), else by the PyTorch round `hydra_round` (compiled on request).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .. import config, kernels
from ..sampling import draw_distinct
from ..tree import DraftTree
from .heads import DraftHeads, HeadDrafter, register, weights_state
from .medusa import ResidualStack

BACKENDS = ("auto", "kernel", "compile", "eager")  # how Hydra++ draft rounds run (`HydraDrafter`)


class PrefixAttention(nn.Module):
    """One pre-norm transformer layer over base hidden states, causal within a sliding window; no positions
    (the base states already carry them)."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.norm1, self.norm2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))
        nn.init.zeros_(self.out.weight)  # starts as the identity on the base hidden state
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def memory(self, hidden: torch.Tensor) -> torch.Tensor:
        """Keys and values [..., 2 * dim] of base hidden states [..., dim]; drafting keeps them with the window."""
        return kernels.linear(self.norm1(hidden), self.qkv.weight[hidden.shape[-1] :])

    def attend(self, queries: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """queries [b, q, dim] (normed) over keys and values memory [b, k, 2 * dim], mask [b, q, k] bool."""
        b, q, d = queries.shape
        qh = kernels.linear(queries, self.qkv.weight[:d]).view(b, q, self.heads, -1).transpose(1, 2)
        kh, vh = (t.reshape(b, memory.shape[1], self.heads, -1).transpose(1, 2) for t in memory.chunk(2, -1))
        att = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask[:, None])
        return self.out(att.transpose(1, 2).reshape(b, q, d))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Every position at once (training): hidden [b, L, dim] -> context [b, L, dim]."""
        length = hidden.shape[1]
        i = torch.arange(length, device=hidden.device)
        mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - self.window)
        h = hidden + self.attend(self.norm1(hidden), self.memory(hidden), mask.expand(hidden.shape[0], -1, -1))
        return h + self.mlp(self.norm2(h))

    def last(self, buffer: torch.Tensor, valid: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        """The newest position only (drafting): buffer [b, window, dim] (newest last), valid [b, window], and the
        buffer's `memory` when the caller kept it (else it is computed here)."""
        memory = self.memory(buffer) if memory is None else memory
        h = buffer[:, -1:] + self.attend(self.norm1(buffer[:, -1:]), memory, valid[:, None, :])
        return (h + self.mlp(self.norm2(h)))[:, 0]


@register("hydra")
class HydraHeads(DraftHeads):
    trims_vocab = True

    def __init__(self, config: dict, target):
        config = {"layers": 2, "window": 64, "attention_heads": 4, **config}
        super().__init__(config, target)
        d = config["hidden_size"]
        self.prefix = PrefixAttention(d, config["attention_heads"], config["window"])
        # head i reads [context; e(x_{t+1}); ...; e(x_{t+1+i})]
        self.inputs = nn.ModuleList(nn.Linear((i + 2) * d, d) for i in range(config["num_heads"]))
        self.stacks = nn.ModuleList(ResidualStack(d, config["layers"] - 1) for _ in range(config["num_heads"]))
        for lin in self.inputs:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def head(self, i: int, context: torch.Tensor, tokens: torch.Tensor, pre: torch.Tensor | None = None,
             tables: dict | None = None):
        """Head i: context [..., dim], tokens [..., i+1] (x_{t+1} .. x_{t+1+i}) -> logits [..., vocab]. `pre`: this
        head's `context_inputs` when the caller computed them for every head at once (drafting does, since the
        context is the same at every depth of a round); `tables`: `current_tables()` when the caller checked them
        once for several head calls (else they are checked here)."""
        if pre is None:
            pre = self.context_input(i, context)
        if tables is None:
            tables = self.current_tables()
        if tables is not None:  # the token part of the input layer looked up instead of multiplied
            pre = pre + tables["tokens"][i][tokens + tables["offsets"][i]].sum(-2)
        else:
            d = context.shape[-1]
            pre = pre + F.linear(self.embed(tokens).flatten(-2), self.inputs[i].weight[:, d:])  # [..., (i+1) * dim]
        x = self.stacks[i](F.silu(pre))
        return self.lm_head(context + x)

    def context_inputs(self, context: torch.Tensor, tables: dict | None = None) -> torch.Tensor:
        """Every head's input layer on the context part alone, bias included: context [..., dim] -> [..., heads,
        dim]; one product when the drafting tables are built (`tables` as in `head`)."""
        if tables is None:
            tables = self.current_tables()
        if tables is not None:
            return kernels.linear(context, tables["context"], tables["bias"]).unflatten(-1, (self.num_heads, -1))
        return torch.stack([self.context_input(i, context) for i in range(self.num_heads)], -2)

    def context_input(self, i: int, context: torch.Tensor) -> torch.Tensor:
        """Head i's input layer on the context part alone, bias included."""
        lin = self.inputs[i]
        return F.linear(context, lin.weight[:, : context.shape[-1]], lin.bias)

    def build_token_tables(self, max_bytes: int = 64 * 2**20) -> bool:
        """For drafting: fold each input layer's token columns into a table over the vocabulary (embedding @
        W_slot^T; per head one [(i+1) * vocab, dim] table, slot j's rows at offset j * vocab), so a head call
        gathers one row per path token instead of reading a (path length x dim x dim) block of weights, and stack
        the heads' context columns into one matrix (`context_inputs`). Same function up to float rounding; built
        only when the tables fit in `max_bytes` (small vocabularies: speech, image, rap), refreshed if the weights
        change, and never used with gradients on (training). Returns whether tables are in use."""
        built = getattr(self, "_tables", None)
        if built is not None and built[0] == self._weight_versions():
            return True  # already built for these weights (drafters are made per call; build once)
        self._tables = None
        d = self.inputs[0].weight.shape[0]
        emb = self.embed.weight
        vocab = emb.shape[0]
        slots = sum(i + 1 for i in range(self.num_heads))
        if slots * vocab * d * emb.element_size() > max_bytes:
            return False
        with torch.no_grad():
            weights = [lin.weight for lin in self.inputs]
            tables = {"context": torch.cat([w[:, :d] for w in weights]),
                      "bias": torch.cat([lin.bias for lin in self.inputs]),
                      "tokens": [torch.cat([emb @ w[:, d * (j + 1) : d * (j + 2)].t()
                                            for j in range(w.shape[1] // d - 1)]) for w in weights],
                      "offsets": [torch.arange(w.shape[1] // d - 1, device=emb.device) * vocab for w in weights]}
        self._tables = (self._weight_versions(), tables)
        return True

    def _weight_versions(self) -> tuple:
        """The state of what the tables are built from (`weights_state`). The tensors are listed once (a head call
        checks this, and walking the modules costs more than the check)."""
        tensors = self.__dict__.get("_sources")
        if tensors is None:
            tensors = self._sources = [self.embed.weight, *(t for lin in self.inputs for t in (lin.weight, lin.bias))]
        return weights_state(tensors)

    def current_tables(self) -> dict | None:
        """The tables if a drafter asked for them and gradients are off, rebuilt first if the weights changed in
        place since; else None."""
        if torch.is_grad_enabled() or getattr(self, "_tables", None) is None or not self.build_token_tables():
            return None
        return self._tables[1]

    def train_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.to_draft(tokens)
        context = self.prefix(hidden)
        length = tokens.shape[1]
        pad = torch.cat([tokens, tokens[:, -1:].expand(-1, self.num_heads + 1)], 1)  # positions past the end
        ahead = torch.stack([pad[:, j : j + length] for j in range(1, self.num_heads + 2)], -1)  # x_{t+1+j}
        return torch.stack([self.head(i, context, ahead[..., : i + 1]) for i in range(self.num_heads)], -2)


class HydraDrafter(HeadDrafter):
    """Sequentially dependent heads fill the sparse tree depth by depth: the children of a node come from the head
    that reads the tokens on that node's path. The prefix attention reads a window of accepted hidden states."""

    def __init__(self, heads: DraftHeads, tree_size: int | None = None, rule: str | None = None,
                 table: list[list[float]] | None = None, draws: str = "auto", dtype: torch.dtype | None = None,
                 backend: str = "auto"):
        """backend: how rounds run. 'auto' (the default): on the CPU by specgen's kernel (`kernels.draft_round`)
        where it applies, and otherwise in PyTorch, compiled if SPECGEN_COMPILE_DRAFT=1 (`config.compile_draft`).
        'kernel': the kernel where it applies, else eager PyTorch. 'compile': every round's tensor work compiled by
        torch.compile (`compiled_hydra_round`; the first round of a new tree shape or batch size waits for the
        compiler). 'eager': PyTorch rounds, eager. The same guesses from the same seed every way, up to float
        rounding."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        super().__init__(heads, tree_size, rule, table, draws, dtype)
        self.compiled = backend == "compile" or backend == "auto" and config.compile_draft()
        self.kernel = backend in ("auto", "kernel")  # `kernels.draft_round` where it applies
        self.native: kernels.KernelRound | None = None  # specgen's CPU kernel for this decode's rounds (`start`)
        self._levels: dict[tuple, list[tuple]] = {}  # the tree's index tensors per (depth budget k, drawn)
        self._plans: dict[tuple, kernels.Plan] = {}  # the same trees as the kernel reads them (`plan`)
        self.heads.build_token_tables()  # cheaper head calls where the vocabulary is small (see HydraHeads)

    @torch.inference_mode()  # (the window's tensors stay inference tensors: a compiled round sees one kind)
    def start(self, prompts, first, sampling, vocab, device, generator=None, hidden=None):
        super().start(prompts, first, sampling, vocab, device, generator, hidden)
        self.tables = self.heads.current_tables()  # the token tables, checked here once for the decode's rounds
        # rounds by specgen's CPU kernel where it applies (`KernelRound`): top guesses, or draws after a temperature
        # alone; its window states are fp32
        plain = not self.drawn or (sampling.top_k == 0 or sampling.top_k >= self.heads.lm_head.weight.shape[0]) and \
            sampling.top_p >= 1.0
        on_cpu = hidden.device.type == "cpu"  # (the heads' own device is checked by `for_heads`)
        self.native = kernels.draft_round(self.heads, self.tables) if self.kernel and plain and on_cpu else None
        self.state_dtype = torch.float32 if self.native is not None else self.dtype
        w = self.heads.config["window"]
        lengths = torch.tensor([len(p) for p in prompts], device=hidden.device)
        # [batch, window, dim], newest last: a short prompt is left-padded to the window (prompts come left-padded
        # too) and the padding is masked, so the buffer keeps one shape (a compiled round is traced once)
        # (fresh strides: a slice of a long prompt's states keeps the prompt's batch stride, and a compiled round
        # would be traced again for every prompt length)
        self.buffer = F.pad(hidden[:, -w:].to(self.state_dtype), (0, 0, max(0, w - hidden.shape[1]), 0)).clone(
            memory_format=torch.contiguous_format)
        self.memory = self.window_memory(self.buffer)  # their keys and values, computed once each
        self.valid = torch.arange(w, device=hidden.device)[None, :] >= (w - lengths)[:, None]
        self.full = bool(self.valid.all())  # no padding left in any row's window
        self.compiled_batch = len(prompts)  # compiled rounds run while no row has left the batch

    @torch.inference_mode()
    def accept(self, emitted, paths, hidden=None):
        w = self.heads.config["window"]
        width = max(len(p) for p in paths)
        if all(p == list(range(width)) for p in paths):  # every row took the same run of first nodes: a slice
            kept = hidden[:, :width].to(self.state_dtype)  # [b, width, dim]
        else:
            idx = torch.tensor([p + p[-1:] * (width - len(p)) for p in paths], device=hidden.device)
            kept = hidden[torch.arange(len(paths), device=hidden.device)[:, None], idx].to(self.state_dtype)
        memory = self.window_memory(kept)  # the accepted states' keys and values only
        if all(len(p) == width for p in paths):  # every row keeps as many: one append for the batch
            # the oldest `width` out, the new ones in: the window keeps its shape and stays contiguous
            self.buffer = torch.cat([self.buffer[:, width:], kept[:, -w:]], 1)
            self.memory = torch.cat([self.memory[:, width:], memory[:, -w:]], 1)
            if not self.full:  # padding is still in some row's window
                self.valid = torch.cat([self.valid[:, width:], self.valid.new_ones(len(paths), min(width, w))], 1)
                self.full = bool(self.valid.all())
            self.advance(emitted, kept[:, -1])  # each row's last accepted state, already gathered
            return
        # rows keep different numbers: each row's newest `window` states, left-padded to the window
        buffer, memory_all = torch.zeros_like(self.buffer), torch.zeros_like(self.memory)
        valid = torch.zeros_like(self.valid)
        for b, p in enumerate(paths):
            r = torch.cat([self.buffer[b][self.valid[b]], kept[b, : len(p)]])[-w:]
            m = torch.cat([self.memory[b][self.valid[b]], memory[b, : len(p)]])[-w:]
            buffer[b, w - len(r):], memory_all[b, w - len(r):], valid[b, w - len(r):] = r, m, True
        self.buffer, self.memory, self.valid = buffer, memory_all, valid
        self.full = bool(valid.all())
        super().accept(emitted, paths, hidden)

    def window_memory(self, states: torch.Tensor) -> torch.Tensor:
        """The prefix attention's keys and values of window states, by the kernel when this decode drafts with it."""
        return self.heads.prefix.memory(states) if self.native is None else self.native.memory(states)

    def select(self, rows):
        super().select(rows)
        self.buffer, self.valid, self.memory = self.buffer[rows], self.valid[rows], self.memory[rows]
        self.full = bool(self.valid.all())

    def use_drawn_paths(self, paths: list[tuple[int, ...]]):
        if paths != self.drawn_paths:  # the index tensors and kernel plans of the old tree are stale
            self._levels, self._plans = {}, {}
        super().use_drawn_paths(paths)

    def levels(self, k: int) -> tuple[list[tuple], torch.Tensor | None, torch.Tensor]:
        """The tree for depth k as index tensors, built once per (k, drawn): per depth, its nodes (the slots of a
        [root, nodes...] row, a slice where they are contiguous), its parents' paths [parents, depth + 1] (slots
        of the root and of the drafted tokens on each parent's path, root first; None where the level extends
        the run of first guesses, whose path is slots 0..depth), which of the level's [parents x ranks] children
        are its nodes (flat indices; None: all, in order), and how many ranks it needs. Then where each node
        sits among the levels' outputs laid end to end (None: already in node order), and the parents tensor."""
        cache, key = self._levels, (k, self.drawn)
        if key not in cache:
            paths, depth, rank, parent = self.tree(k)
            index = {p: i + 1 for i, p in enumerate(paths)}  # slot 0 is the root
            device = self.heads.lm_head.weight.device
            as_tensor = lambda t: torch.tensor(t, dtype=torch.long, device=device)  # noqa: E731
            out, order = [], []
            for d in range(max(depth) + 1):
                nodes = [i for i, dd in enumerate(depth) if dd == d]
                parents = sorted({parent[i] for i in nodes})  # -1: the root
                ancestors = [[0] + ([index[paths[p][: j + 1]] for j in range(d)] if p >= 0 else []) for p in parents]
                ranks = max(rank[i] for i in nodes) + 1
                pick = [parents.index(parent[i]) * ranks + rank[i] for i in nodes]
                slots = [i + 1 for i in nodes]
                contiguous = slots == list(range(slots[0], slots[0] + len(slots)))
                out.append((slice(slots[0], slots[-1] + 1) if contiguous else as_tensor(slots),
                            None if ancestors == [list(range(d + 1))] else as_tensor(ancestors),
                            None if pick == list(range(len(parents) * ranks)) else as_tensor(pick), ranks))
                order += nodes
            where = [order.index(i) for i in range(len(order))]
            cache[key] = (out, None if where == list(range(len(where))) else as_tensor(where), as_tensor(parent))
        return cache[key]

    def plan(self, k: int) -> kernels.Plan:
        """`levels(k)` as the kernel reads it (`KernelRound.plan`), made once per (k, drawn)."""
        key = (k, self.drawn)
        if key not in self._plans:
            self._plans[key] = kernels.KernelRound.plan(self.levels(k)[0])
        return self._plans[key]

    @torch.inference_mode()
    def propose(self, k: int) -> DraftTree:
        levels, where, parent = self.levels(k)
        b = self.root.shape[0]
        noise = None
        if self.drawn:  # the round's randomness, drawn here: Exp(1) noise for every parent's children (`draw_distinct`)
            parents = sum(1 if a is None else a.shape[0] for _, a, _, _ in levels)
            noise = torch.empty(b, parents, self.heads.lm_head.weight.shape[0], device=self.root.device,
                                dtype=torch.float32)
            noise.exponential_(generator=self.generator)
        if self.native is not None:
            tokens, valid, q = self.native.round(self.plan(k), self.buffer[:, -1], self.memory, self.valid, self.root,
                                                 noise, self.sampling.temperature if self.drawn else 1.0,
                                                 self.blocked if self.drawn else None)
            self.forwards += 1
            return self.in_target(DraftTree(tokens, parent.expand(b, -1), valid, q))
        run = hydra_round
        full = k >= max(len(p) for p in (self.drawn_paths if self.drawn else self.paths))  # no path cut short
        if self.compiled and full and b == self.compiled_batch:  # the whole tree, at the batch it started with
            run = compiled_hydra_round()
            if run is None:  # compiling failed earlier in this process (and said so then)
                self.compiled, run = False, hydra_round
        drawn = self.drawn
        args = (self.heads, levels, where, parent.shape[0], self.tables, self.blocked if drawn else None,
                self.sampling if drawn else None, self.buffer, self.valid, self.memory, self.root, noise)
        try:
            tokens, valid, q = run(*args)
        except compiler_errors() as err:
            if run is hydra_round:
                raise
            self.compiled, _COMPILED["hydra"] = False, None  # e.g. no C++ compiler: say so once, then eager
            warnings.warn(f"compiled draft rounds are unavailable here ({type(err).__name__}: {err}); drafting "
                          f"eagerly instead (same guesses). Leave the backend at 'auto' to skip the attempt.",
                          stacklevel=2)
            tokens, valid, q = hydra_round(*args)
        self.forwards += 1
        return self.in_target(DraftTree(tokens, parent.expand(b, -1), valid, q))


def hydra_round(heads, levels, where, size, tables, blocked, sampling, buffer, valid, memory, root, noise):
    """One Hydra++ draft round as tensor work alone (`HydraDrafter.propose` holds the state and the randomness):
    the context vector from the prefix attention, then the tree of `size` nodes depth by depth (its `levels`), each
    level's children drawn with the given Exp(1) noise [batch, parents, vocab] (all levels' parents in order)
    from the heads' distribution after `sampling` with `blocked` tokens barred, or the heads' top-k when
    `sampling` is None. Returns the nodes' tokens [batch, nodes], validity and, when drawn, the distributions
    they were drawn from [batch, nodes, vocab] (fp32)."""
    context = heads.prefix.last(buffer, valid, memory)  # [batch, dim]
    pre = heads.context_inputs(context, tables)  # [batch, heads, dim]: the same at every depth
    b = context.shape[0]
    tokens = torch.empty(b, size + 1, dtype=torch.long, device=context.device)  # the root, then the nodes
    tokens[:, 0] = root
    oks, qs, used = [], [], 0  # per level, in level order
    for d, (nodes, ancestors, pick, ranks) in enumerate(levels):
        # the tokens on each parent's path, root first: [batch, parents, d + 1]
        path = tokens[:, None, : d + 1] if ancestors is None else tokens[:, ancestors]
        logits = heads.head(d, context[:, None], path, pre[:, None, d], tables)  # [batch, parents, vocab]
        if sampling is not None:
            if blocked is not None:
                logits = logits.masked_fill(blocked, float("-inf"))
            m = logits.shape[1]
            top, drawn_from, ok = draw_distinct(sampling.probs(logits), ranks, noise=noise[:, used : used + m])
            used += m
            drawn_from = drawn_from.flatten(1, 2)
        else:
            top, drawn_from = logits.topk(ranks, dim=-1).indices, None
            ok = torch.ones_like(top, dtype=torch.bool)
        top, ok = top.flatten(1), ok.flatten(1)  # [batch, parents * ranks]
        if pick is not None:
            top, ok = top[:, pick], ok[:, pick]
            drawn_from = None if drawn_from is None else drawn_from[:, pick]
        tokens[:, nodes] = top
        oks.append(ok)
        qs.append(drawn_from)
    valid = oks[0] if len(oks) == 1 else torch.cat(oks, 1)
    q = None if qs[0] is None else qs[0] if len(qs) == 1 else torch.cat(qs, 1)
    if where is not None:  # levels laid end to end -> node order
        valid, q = valid[:, where], None if q is None else q[:, where]
    return tokens[:, 1:], valid, q


_COMPILED = {}


def compiler_errors() -> tuple[type[BaseException], ...]:
    """What torch.compile raises when it cannot compile here (no C++ toolchain, a lowering it lacks): these turn
    compiled rounds off for the process; any other error is the round's own and is raised."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

    return TorchDynamoException, InvalidCxxCompiler, CppCompileError, OSError


def compiled_hydra_round():
    """`hydra_round` compiled by torch.compile (made once per process; each tree shape, batch and precision is
    traced once and kept, the first time taking seconds). A round issues some 180 small operations; compiled,
    their Python dispatch goes and the elementwise ones fuse (`config.compile_draft`). None where compiling failed."""
    if "hydra" not in _COMPILED:
        _COMPILED["hydra"] = torch.compile(hydra_round, dynamic=False)
    return _COMPILED["hydra"]  # None once it failed in this process (the drafter then runs `hydra_round`)
