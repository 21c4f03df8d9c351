"""Drafting from heads on the target's final hidden state: static sparse trees filled from the heads' top-k
(Medusa, KOALA), the same trees grown depth by depth with sequentially dependent heads (Hydra++), and beam search
merged into a prefix tree (ReDrafter). Every tree is verified in one target forward."""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .. import config, kernels
from ..heads.base import DraftHeads
from ..sampling import draw_distinct
from ..tree import DraftTree, best_paths, sparse_tree, tree_tensors
from .base import Drafter


def default_accuracy(num_heads: int, ranks: int = 8) -> list[list[float]]:
    """A prior for uncalibrated heads: deeper heads and lower ranks are right less often."""
    return [[0.6 ** (d + 1) / (r + 1) for r in range(ranks)] for d in range(num_heads)]


def head_rates(accuracy: list[list[float]], num_heads: int, vocab: int) -> list[list[float]]:
    """A calibration table's rows for the horizontal heads, no rank beyond the vocabulary."""
    return [row[:vocab] for row in accuracy[:num_heads]]


def head_tree(rates: list[list[float]], size: int) -> list[tuple[int, ...]]:
    """The `size` candidate paths of head ranks (`sparse_tree`), depth first, lower ranks first (tuple order): the
    run of first guesses takes the first node indices, so accepting along it keeps a prefix of the verified nodes
    (the target's cache is cropped, not gathered), and Hawk's vertical run hangs below node `chain` - 1; a parent
    still precedes its children, and siblings keep their rank order."""
    return sorted(sparse_tree(rates, size))


CPU_TREE_SIZE, CUDA_TREE_SIZE = 8, 32
DRAWS = ("auto", "top", "sample")


def default_draft_dtype(heads: DraftHeads) -> torch.dtype:
    """The precision heads draft in when the caller names none: fp16 for fp32 heads on a CPU, else their own.
    A draft step reads every head's weights once, and by then the target's forward has pushed them out of the
    cache: on the AVX2 CPU of the README's benchmarks a one-row fp16 product of a 384 x 384 matrix read from
    memory took 0.40 of the fp32 time (`scripts/bench_draft_precision.py`). Precision changes which guesses are
    made, never whether the output is exact: the target checks them, and a drawn guess is tested against the very
    distribution it was drawn from (an fp16 overflow only costs guesses)."""
    dtype = heads.lm_head.weight.dtype
    return torch.float16 if heads.lm_head.weight.device.type == "cpu" and dtype == torch.float32 else dtype


def drafting_heads(heads: DraftHeads, dtype: torch.dtype | None) -> DraftHeads:
    """The heads a drafter runs: their kept copy in `dtype` (default `default_draft_dtype`), with the few-row CPU
    product switched on where it applies; the heads themselves where they already are in `dtype` (the caller's,
    left as they were loaded: `load_heads(..., narrow=True)` switches them)."""
    copy = heads.drafting_copy(dtype or default_draft_dtype(heads))
    return copy if copy is heads else kernels.narrow_matmuls(copy)


def default_tree_size(heads: DraftHeads) -> int:
    """Candidate-tree nodes per round when the caller names none. On a GPU a forward over 32 tokens costs about
    what one costs (memory-bound), so a wide tree is free; on a CPU a small model's forward grows with the
    tokens it reads, and a small tree is faster overall (measured in the README's speech and text benchmarks).
    Heads may carry their own measured CPU size (`cpu_tree_size` in heads.json)."""
    if heads.lm_head.weight.device.type == "cuda":
        return CUDA_TREE_SIZE
    return int(heads.config.get("cpu_tree_size", CPU_TREE_SIZE))


class HeadDrafter(Drafter):
    """What head drafters share: the hidden state at each row's last accepted node and its pending root token."""

    needs_hidden = True
    drawn = False  # this batch's children are drawn (`start`)

    def __init__(self, heads: DraftHeads, tree_size: int | None = None, rule: str | None = None,
                 table: list[list[float]] | None = None, draws: str = "auto", dtype: torch.dtype | None = None):
        """rule: the acceptance rule the tree is shaped for ('greedy', 'sample', 'tolerance:K'); its calibration
        table from heads.json when there is one (`specgen calibrate-heads`), else the greedy table (`table`
        overrides both). The shape changes speed only, never what is accepted.
        draws: how a node's children are picked: 'top', the heads' top-k; 'sample', drawn without replacement
        from the heads' distribution after the decode's temperature, top-k and top-p (`draw_distinct`), which
        under the lossless `sample` rule is accepted with probability 1 - TV(target, head) instead of the
        target's probability of the head's favourite; 'auto', drawn when the decode samples with that rule.
        dtype: the precision the heads draft in (default: `default_draft_dtype`)."""
        tree_size = default_tree_size(heads) if tree_size is None else tree_size
        if tree_size < 1:
            raise ValueError(f"tree_size must be >= 1, got {tree_size}")
        if draws not in DRAWS:
            raise ValueError(f"draws must be one of {', '.join(DRAWS)}, got {draws!r}")
        self.heads = drafting_heads(heads, dtype)
        self.dtype = self.heads.lm_head.weight.dtype
        self.name = heads.kind
        self.draws = draws
        vocab = heads.lm_head.weight.shape[0]

        def tree_for(accuracy):
            return head_tree(head_rates(accuracy, heads.num_heads, vocab), tree_size)

        self.paths = tree_for(table or heads.accuracy_for(rule) or default_accuracy(heads.num_heads))
        # when the decode turns out to draw (`start`), the tree calibrated for drawn children, if there is one
        # (`specgen calibrate-heads --rules drawn`)
        drawn = None if table or draws == "top" else (heads.config.get("rule_accuracy") or {}).get("drawn")
        self.drawn_paths = tree_for(drawn) if drawn else self.paths
        self.forwards = 0

    def start(self, prompts, first, sampling, vocab, device, generator=None, hidden=None):
        super().start(prompts, first, sampling, vocab, device, generator)
        self.drawn = not sampling.greedy and (self.draws == "sample" or
                                              (self.draws == "auto" and self.acceptance == "sample"))
        self.h = hidden[:, -1].to(self.dtype)  # [batch, dim]: the state whose next token is the pending root
        self.root = torch.tensor(first, device=hidden.device)

    def accept(self, emitted, paths, hidden=None):
        last = torch.tensor([p[-1] for p in paths], device=hidden.device)
        self.advance(emitted, hidden[torch.arange(hidden.shape[0], device=hidden.device), last])

    def advance(self, emitted, h: torch.Tensor):
        """Each row's next draft state: h [batch, dim], the hidden state at its last accepted node, and its pending
        root, the last token it emitted."""
        self.h = h.to(self.dtype)
        self.root = torch.tensor([e[-1] for e in emitted], device=h.device)

    def select(self, rows):
        self.h, self.root = self.h[rows], self.root[rows]

    def tree(self, k: int):
        paths = [p for p in (self.drawn_paths if self.drawn else self.paths) if len(p) <= k]
        return paths, *tree_tensors(paths)

    def use_drawn_paths(self, paths: list[tuple[int, ...]]):
        """Draw into this tree from now on (Hawk gives part of its budget to vertical guesses, `HawkDrafter`)."""
        self.drawn_paths = paths

    def children(self, logits: torch.Tensor, n: int):
        """A parent's n children from head logits [..., vocab]: tokens [..., n], what each was drawn from
        [..., n, vocab] (None for the deterministic top-n) and which are real [..., n]."""
        if self.drawn:
            if self.blocked is not None:
                logits = logits.masked_fill(self.blocked, float("-inf"))
            return draw_distinct(self.sampling.probs(logits), n, self.generator)
        top = logits.topk(n, dim=-1).indices
        return top, None, torch.ones_like(top, dtype=torch.bool)


class MedusaDrafter(HeadDrafter):
    """Independent heads read one hidden state; node (depth d, rank r) of the sparse tree gets head d's rank-r
    token."""

    @torch.inference_mode()
    def propose(self, k: int) -> DraftTree:
        _, depth, rank, parent = self.tree(k)
        logits = self.heads(self.h)[:, : max(depth) + 1]  # [batch, depth, vocab]
        self.forwards += 1
        top, q, ok = self.children(logits, max(rank) + 1)  # [batch, depth, ranks], every parent shares them
        parents = torch.tensor(parent, device=top.device).expand(top.shape[0], -1)
        return DraftTree(top[:, depth, rank], parents, ok[:, depth, rank], None if q is None else q[:, depth, rank])


class HydraDrafter(HeadDrafter):
    """Sequentially dependent heads fill the sparse tree depth by depth: the children of a node come from the head
    that reads the tokens on that node's path. The prefix attention reads a window of accepted hidden states."""

    def __init__(self, heads: DraftHeads, tree_size: int | None = None, rule: str | None = None,
                 table: list[list[float]] | None = None, draws: str = "auto", dtype: torch.dtype | None = None,
                 compile: bool | None = None):
        """compile: how rounds run. None (the default): on the CPU by specgen's kernel (`KernelRound`) where it
        applies, and otherwise in PyTorch, compiled if SPECGEN_COMPILE_DRAFT=1 (`config.compile_draft`). True: every
        round's tensor work compiled by torch.compile (`compiled_hydra_round`; the first round of a new tree shape
        or batch size waits for the compiler). False: PyTorch rounds, eager. The same guesses from the same seed
        every way, up to float rounding."""
        super().__init__(heads, tree_size, rule, table, draws, dtype)
        self.compiled = config.compile_draft() if compile is None else compile
        self.kernel = compile is None  # `KernelRound` where it applies
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
            return DraftTree(tokens, parent.expand(b, -1), valid, q)
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
                          f"eagerly instead (same guesses). Leave compile_draft unset to skip the attempt.",
                          stacklevel=2)
            tokens, valid, q = hydra_round(*args)
        self.forwards += 1
        return DraftTree(tokens, parent.expand(b, -1), valid, q)


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


class BeamDrafter(HeadDrafter):
    """ReDrafter: a beam search of width `beam_width` with the recurrent head; the beams are merged into a prefix
    tree (shared prefixes become one node), so siblings are distinct tokens."""

    def __init__(self, heads: DraftHeads, beam_width: int = 4, dtype: torch.dtype | None = None):
        super().__init__(heads, dtype=dtype)
        self.beam_width = min(beam_width, heads.lm_head.weight.shape[0])

    @torch.inference_mode()
    def propose(self, k: int) -> DraftTree:
        heads, w = self.heads, self.beam_width
        depth = min(k, heads.num_heads)
        s = heads.state(heads.embed(self.root), None)  # [batch, dim]
        logp = heads.logits(self.h, s).float().log_softmax(-1)  # [batch, vocab]
        score, tok = logp.topk(w, -1)  # [batch, w]
        beams, s = tok[..., None], s[:, None].expand(-1, w, -1)
        h = self.h[:, None].expand(-1, w, -1)
        for _ in range(depth - 1):
            s = heads.state(heads.embed(beams[..., -1]), s)  # [batch, w, dim]
            cand = score[..., None] + heads.logits(h, s).float().log_softmax(-1)  # [batch, w, vocab]
            score, flat = cand.flatten(1).topk(w, -1)
            src, tok = flat // cand.shape[-1], flat % cand.shape[-1]
            beams = torch.cat([beams.gather(1, src[..., None].expand(-1, -1, beams.shape[-1])), tok[..., None]], -1)
            s = s.gather(1, src[..., None].expand(-1, -1, s.shape[-1]))
        self.forwards += 1
        return prefix_tree(beams.tolist(), self.h.device)


def prefix_tree(beams: list[list[list[int]]], device) -> DraftTree:
    """Token sequences [batch][sequence][depth] (of any lengths) merged into one prefix tree per row: shared
    prefixes become one node, so siblings are distinct tokens; rows are padded with invalid nodes."""
    rows = []
    for row in beams:
        index, toks, pars = {}, [], []
        for beam in row:
            for j in range(len(beam)):
                key = tuple(beam[: j + 1])
                if key not in index:
                    index[key] = len(toks)
                    toks.append(beam[j])
                    pars.append(index[key[:-1]] if j else -1)
        rows.append((toks, pars))
    n = max(len(t) for t, _ in rows)
    tokens = torch.zeros(len(rows), n, dtype=torch.long)
    parents = torch.full((len(rows), n), -1, dtype=torch.long)
    valid = torch.zeros(len(rows), n, dtype=torch.bool)
    for i, (t, p) in enumerate(rows):
        tokens[i, : len(t)], parents[i, : len(p)], valid[i, : len(t)] = torch.tensor(t), torch.tensor(p), True
    return DraftTree(tokens.to(device), parents.to(device), valid.to(device))


class HawkDrafter(Drafter):
    """Hawk: the horizontal heads fill a sparse tree (Medusa-style heads as MedusaDrafter does, Hydra++ heads as
    HydraDrafter does); every accepted node's vertical heads leave guesses for the positions rows below in a
    speculation cache. Where a candidate path reaches a cached position (right after the root, or under any
    horizontal node), the cached guesses extend it, run by run. Horizontal and vertical candidates then compete
    for the same node budget: each node is scored by the product of its path's calibrated acceptance rates
    (horizontal: its head and rank; vertical: whether it agrees with the horizontal favourite at its node, from
    `vertical_rates`) and the `tree_size` best form a prefix tree, so the vertical heads replace the least likely
    horizontal nodes instead of widening every verification. Cache entries for positions already decided are
    dropped.

    With drawn horizontal guesses a ring holds the row-up head's distributions instead, and the vertical guesses
    extend the drawn chain of first guesses past its last head: a run of nodes, each drawn from the distribution
    held for its position (`extend_drawn`). How many of the `tree_size` nodes go to that run is
    fixed once, from the calibrated rates of drawn guesses (`split_drawn`); where the run's nodes are real depends
    on positions alone. So the tree's shape never depends on a drawn token, and every draw is tested against the
    distribution it came from: exact.

    `image_start[b]` is the position of row b's first image token (its prefix length); positions before it are
    never cached or proposed from the cache."""

    needs_hidden = True

    def __init__(self, heads: DraftHeads, tree_size: int | None = None, vertical: bool = True,
                 rule: str | None = None, draws: str = "auto", dtype: torch.dtype | None = None,
                 compile: bool | None = None):
        """draws: 'top' keeps Hawk's tree; 'sample', and 'auto' (the default) when the decode samples under the
        lossless `sample` rule, draw the horizontal guesses as `HeadDrafter` does, and the vertical guesses only
        extend the drawn chain (see the class): Hawk's own tree picks cached guesses by their agreement with the
        drafted tokens, and a drawn guess whose place in the tree depends on its own value is no longer
        distributed as the q it is tested with. Under greedy decoding and the lossy rules 'auto' keeps Hawk's
        tree. dtype: the precision the heads draft in (default: `default_draft_dtype`). compile: how Hydra++
        rows' rounds run (`HydraDrafter`: by specgen's CPU kernel where it applies, True: torch.compile, False:
        eager PyTorch)."""
        heads = drafting_heads(heads, dtype)
        self.heads, self.name = heads, heads.kind
        self.n_h = heads.num_heads
        self.vertical = vertical  # False: horizontal heads only (the ablation)
        # acceptance rates per head (horizontal, then vertical) and rank; uncalibrated vertical head d gets the
        # prior of horizontal depth d
        self.table = (heads.accuracy_for(rule) or
                      default_accuracy(self.n_h) + default_accuracy(heads.config["vertical"]))
        # a cached guess that agrees with the horizontal favourite at its node, or differs from it (calibrated:
        # `vertical_rates`), else the vertical head's overall rate either way
        marginal = [row[0] for row in self.table[self.n_h :]]
        rates = (heads.config.get("vertical_rates") or {}).get(rule or "greedy", {})
        self.agree, self.differ = rates.get("agree", marginal), rates.get("differ", marginal)
        self.marginal = marginal
        tree_size = default_tree_size(heads) if tree_size is None else tree_size
        hydra = heads.config.get("horizontal") == "hydra"
        if compile and not hydra:
            raise ValueError("compile=True needs Hawk heads with Hydra++ rows; these have Medusa rows, which draft "
                             "eagerly: leave compile unset")
        kw = dict(table=self.table, draws=draws, dtype=heads.lm_head.weight.dtype)  # the copy's: draft in it
        self.horizontal = (HydraDrafter(heads.rows, tree_size, **kw, compile=compile) if hydra else
                           MedusaDrafter(heads, tree_size, **kw))
        self.size = len(self.horizontal.paths)
        # drawn guesses: the horizontal tree alone, or split with a run of vertical ones (`start` picks), both
        # shaped by the rates of drawn guesses where they were calibrated (`calibrate-heads --rules drawn`)
        drawn = None if draws == "top" else (heads.config.get("rule_accuracy") or {}).get("drawn")
        self.drawn_alone, self.drawn_split = self.split_drawn(tree_size, drawn or self.table)
        self.extension = 0  # this decode's run of vertical nodes (`start`)
        self._runs: dict[tuple, tuple] = {}  # `extend_drawn`'s index tensors per (tree nodes, chain, depths, device)

    @property
    def forwards(self) -> int:
        return self.horizontal.forwards

    @forwards.setter
    def forwards(self, value: int):
        self.horizontal.forwards = value

    def split_drawn(self, size: int, table: list[list[float]]):
        """Drawn trees of `size` nodes: the horizontal paths alone, and how the nodes are best shared between
        horizontal paths and a run of vertical guesses below their chain of first guesses (those paths and the
        run's length). A path scores the product of the calibrated rates along it (`table`: horizontal heads, then
        vertical, by rank; a drawn vertical guess is rated as vertical head 1's rank 0), and the split with the
        best total wins. The run reaches no deeper than one row ahead of the root, where the guesses made one
        row up end."""
        rows = head_rates(table, self.n_h, self.heads.lm_head.weight.shape[0])
        if not self.heads.config["vertical"]:  # no vertical head: the horizontal tree alone
            paths = head_tree(rows, size)
            return paths, (paths, 0)
        rate = table[self.n_h][0] if len(table) > self.n_h else self.marginal[0]
        best = alone = None
        for m in range(size, 0, -1):  # ties go to the larger horizontal tree
            paths = head_tree(rows, m)
            alone = alone or paths
            scores, total = {}, 0.0
            for p in paths:
                scores[p] = scores.get(p[:-1], 1.0) * rows[len(p) - 1][p[-1]]
                total += scores[p]
            chain = sum(1 for p in paths if not any(p))
            run = max(0, min(size - len(paths), self.heads.config["width"] - chain))
            total += sum(scores.get((0,) * chain, 1.0) * rate ** j for j in range(1, run + 1))
            if best is None or total > best[0] + 1e-12:
                best = (total, paths, run)
        return alone, (best[1], best[2])

    def start(self, prompts, first, sampling, vocab, device, generator=None, hidden=None):
        super().start(prompts, first, sampling, vocab, device, generator, hidden)
        self.horizontal.configure(self.acceptance, self.blocked)
        self.horizontal.start(prompts, first, sampling, vocab, device, generator, hidden)
        paths, self.extension = self.drawn_split if self.vertical and self.horizontal.drawn else (self.drawn_alone, 0)
        self.horizontal.use_drawn_paths(paths)
        self.chain = sum(1 for p in paths if not any(p))  # the drawn chain of first guesses the run hangs below
        self.root_pos = [len(p) for p in prompts]  # position of each row's pending root token
        self.image_start = [len(p) for p in prompts]
        self.cache: list[dict[int, dict[int, int]]] = [{} for _ in prompts]  # position -> {vertical head: token}
        # with drawn guesses, the row-up head's distributions instead, in a ring of one image row per batch row:
        # position p in slot p % width (the positions a run reads are the next `width`), and which position each
        # slot holds (-1: none)
        w, n = self.heads.config["width"], self.heads.lm_head.weight.shape[0]
        # (an empty slot holds a uniform distribution: a run node drawn from it is padding, but a proper draw)
        self.ring = torch.full((len(prompts), w if self.extension else 0, n), 1.0 / n, device=hidden.device)
        self.ring_pos = torch.full(self.ring.shape[:2], -1, dtype=torch.long, device=hidden.device)
        # the row-up head by specgen's kernel where the horizontal rounds run there
        native = getattr(self.horizontal, "native", None)
        self.stack = kernels.stack_probs(native, self.heads.vertical[0]) if self.extension else None
        if self.uses_cache:
            self.remember(self.horizontal.h, [[pos - 1] for pos in self.root_pos])

    @property
    def uses_cache(self) -> bool:
        """Vertical guesses join this batch's trees (with drawn horizontal guesses, only as a run: see the class)."""
        return self.vertical and (not self.horizontal.drawn or self.extension > 0)

    def remember(self, hidden_rows: torch.Tensor, positions: list[list[int]]):
        """Vertical guesses from hidden states [batch, n, dim] (or [batch, dim]) at the given positions (as many
        per row; a row may repeat its last): each vertical head's top token into the cache, or with drawn guesses
        the row-up head's distribution after the decode's sampling into the ring (a run reads no other: where the
        row-up head has no guess yet, in the first image row, no head has)."""
        if hidden_rows.dim() == 2:
            hidden_rows = hidden_rows[:, None]
        w = self.heads.config["width"]
        drawn = self.horizontal.drawn
        dtype = self.heads.lm_head.weight.dtype
        with torch.inference_mode():
            if drawn:
                if self.stack is not None:  # the kernel's product (fp32 activations), as the horizontal round's
                    probs = self.stack.probs(hidden_rows, self.sampling.temperature, self.blocked)
                else:
                    logits = self.heads.vertical_logits(hidden_rows.to(dtype), 1)[..., 0, :]
                    if self.blocked is not None:
                        logits = logits.masked_fill(self.blocked, float("-inf"))
                    probs = self.sampling.probs(logits)
                target = torch.tensor(positions, device=self.ring.device) + 1 + w  # [batch, n]
                slots = target % w  # distinct in a row but for repeats, which write the same
                self.ring.scatter_(1, slots[..., None].expand(-1, -1, self.ring.shape[-1]), probs.to(self.ring))
                self.ring_pos.scatter_(1, slots, target)
                return
            guesses = self.heads.vertical_logits(hidden_rows.to(dtype)).argmax(-1).tolist()
        for b, (row, cache) in enumerate(zip(guesses, self.cache)):
            for (pos, per_head) in zip(positions[b], row):
                for d, tok in enumerate(per_head):
                    target = pos + 1 + w * (d + 1)
                    if target >= self.image_start[b]:
                        cache.setdefault(target, {})[d] = tok

    def extend(self, rates: dict[tuple, float], favourite: dict[tuple, int], b: int, k: int):
        """Add to candidate paths (token tuples -> acceptance rate of their last node) the runs of cached guesses
        that continue one of them or the root, up to depth k. favourite[node]: the horizontal rank-0 token under
        a node; a cached guess there is rated by whether it agrees with it. A run stops where its path scores
        below the `size`-th best horizontal path, which the budget would never reach."""
        from collections import deque

        base, cache = self.root_pos[b] + 1, self.cache[b]  # the position of a depth-0 node
        score = {(): 1.0}
        for path, rate in rates.items():  # parents come first
            score[path] = score[path[:-1]] * rate
        ranked = sorted(score.values(), reverse=True)
        floor = ranked[self.size] if len(ranked) > self.size else 0.0  # ranked[0] is the root's 1.0
        frontier = deque(score)  # parents before children, so a node's rate is final when its children are scored
        while frontier:
            node = frontier.popleft()
            if node:
                score[node] = score[node[:-1]] * rates[node]
            for d, tok in cache.get(base + len(node), {}).items() if len(node) < k else ():
                child, top = node + (tok,), favourite.get(node)
                rate = self.marginal[d] if top is None else self.agree[d] if tok == top else self.differ[d]
                if score[node] * rate <= floor or rate <= rates.get(child, 0.0):
                    continue
                if child not in rates:
                    frontier.append(child)
                rates[child] = rate

    @torch.inference_mode()
    def propose(self, k: int) -> DraftTree:
        tree = self.horizontal.propose(k)  # nodes in the order of the sparse tree's paths
        if self.horizontal.drawn:  # drawn guesses: the horizontal tree as drawn, then the run of vertical ones
            return self.extend_drawn(tree, k) if self.extension else tree
        _, depth, rank, _ = self.horizontal.tree(k)
        tokens, parent = tree.tokens.tolist(), tree.parents[0].tolist()
        rows = []
        for b in range(len(tokens)):
            seqs: list[tuple] = []  # every horizontal candidate path as its tokens
            for i in range(len(depth)):
                seqs.append((seqs[parent[i]] if parent[i] >= 0 else ()) + (tokens[b][i],))
            if self.vertical and self.cache[b]:
                rates = {s: self.table[depth[i]][rank[i]] for i, s in enumerate(seqs)}
                favourite = {s[:-1]: s[-1] for i, s in enumerate(seqs) if rank[i] == 0}
                self.extend(rates, favourite, b, k)
                seqs = best_paths(rates, self.size)
            rows.append(seqs)
        return prefix_tree(rows, tree.tokens.device)

    def extend_drawn(self, tree: DraftTree, k: int) -> DraftTree:
        """The drawn tree and, below its chain of first guesses, the run of `extension` vertical nodes: node j
        drawn from the distribution the ring holds for its position (`remember`). A node is real while
        its position and every one before it in the run has a distribution there, inside the depth budget k;
        the rest are padding. Positions alone decide that, never a drawn token."""
        b, n = tree.tokens.shape
        chain = min(self.chain, k)  # the first `chain` nodes are the chain (`head_tree`)
        w, v, device = self.heads.config["width"], self.ring.shape[-1], self.ring.device
        left = min(k - chain, self.extension)  # the run's depths inside the budget k
        key = (n, chain, left, device)
        if key not in self._runs:  # the run's depths, its parents, and which of them the budget leaves it
            depth = torch.arange(self.extension, device=device)
            parents = torch.arange(n - 1, n + self.extension - 1, device=device)
            parents[0] = chain - 1  # under the chain's last node (-1: the root)
            self._runs[key] = (depth + 1 + chain, parents, depth < left if left < self.extension else None)
        offsets, parents, budget = self._runs[key]
        where = torch.tensor(self.root_pos, device=device)[:, None] + offsets  # [batch, run] positions
        slots = where % w
        q = self.ring.view(-1, v).index_select(0, (slots + w * torch.arange(b, device=device)[:, None]).view(-1))
        cached = self.ring_pos.gather(1, slots) == where
        if budget is not None:
            cached &= budget
        tokens, q, real = draw_distinct(q.view(b, -1, v), 1, self.generator)
        valid = (real[..., 0] & cached).cumprod(-1).bool()  # a run: nothing real after a gap
        return DraftTree(torch.cat([tree.tokens, tokens[..., 0]], 1),
                         torch.cat([tree.parents, parents.expand(b, -1)], 1),
                         torch.cat([tree.valid, valid], 1), torch.cat([tree.q, q[..., 0, :].to(tree.q.dtype)], 1))

    def accept(self, emitted, paths, hidden=None):
        if self.uses_cache:  # every accepted node's vertical guesses
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            # (with drawn guesses only a path's last `width` states: the ring keeps one image row, and an earlier
            # state's guess is for a position this round decided)
            cut = self.heads.config["width"] if self.horizontal.drawn else None
            nodes = [[(self.root_pos[b] + j, node) for j, node in enumerate(p)][-cut if cut else 0:]
                     for b, p in enumerate(paths)]
            width = max(len(n) for n in nodes)
            nodes = [n + n[-1:] * (width - len(n)) for n in nodes]  # a short row repeats its last
            idx = torch.tensor([[node for _, node in n] for n in nodes], device=hidden.device)
            self.remember(hidden[rows[:, None], idx], [[pos for pos, _ in n] for n in nodes])  # [batch, width, dim]
        self.horizontal.accept(emitted, paths, hidden)
        for b, e in enumerate(emitted):
            self.root_pos[b] += len(e)
            if self.cache[b]:
                self.cache[b] = {p: t for p, t in self.cache[b].items() if p > self.root_pos[b]}  # drop decided

    def select(self, rows):
        self.horizontal.select(rows)
        self.root_pos = [self.root_pos[r] for r in rows]
        self.image_start = [self.image_start[r] for r in rows]
        self.cache = [self.cache[r] for r in rows]
        self.ring, self.ring_pos = self.ring[rows], self.ring_pos[rows]
