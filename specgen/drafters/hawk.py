"""Hawk heads (Chen et al. 2025, "Hawk: Leveraging Spatial Context for Faster Autoregressive Text-to-Image
Generation"): for a raster of image tokens `width` wide, horizontal heads guess the next tokens in the row and
vertical heads guess the tokens one or more rows below, which the drafter keeps in a speculation cache until
the raster reaches them.

The horizontal heads are Medusa residual blocks by default (`horizontal: "medusa"`, as in the paper), or Hydra++
heads (`horizontal: "hydra"`) that also read the tokens drafted before the one they guess, so a guess follows
the token the target actually sampled. The vertical heads are residual blocks on the target's hidden state
either way (they guess a whole row ahead, where the tokens in between are not drafted).

HawkDrafter drafts the horizontal tree with MedusaDrafter or HydraDrafter and adds the cached vertical guesses."""
from __future__ import annotations

import torch
from torch import nn

from .. import kernels
from ..sampling import draw_distinct
from ..tree import DraftTree, best_paths
from .base import Drafter
from .heads import (DraftHeads, default_accuracy, default_tree_size, drafting_heads, head_rates, head_tree,
                    prefix_tree, register)
from .hydra import HydraDrafter, HydraHeads
from .medusa import MedusaDrafter, ResidualStack

HORIZONTAL = ("medusa", "hydra")


@register("hawk")
class HawkHeads(DraftHeads):
    def __init__(self, config: dict, target):
        config = {"layers": 1, "vertical": 2, "width": 16, "horizontal": "medusa", **config}
        if config["horizontal"] not in HORIZONTAL:
            raise ValueError(f"unknown horizontal head kind {config['horizontal']!r}: choose {' or '.join(HORIZONTAL)}")
        super().__init__(config, target)
        d = config["hidden_size"]
        if config["horizontal"] == "hydra":  # its own config: hidden size, heads and Hydra's defaults
            self.rows = HydraHeads({"hidden_size": d, "num_heads": config["num_heads"], **config.get("hydra", {})},
                                   target)
        else:
            self.horizontal = nn.ModuleList(ResidualStack(d, config["layers"]) for _ in range(config["num_heads"]))
        self.vertical = nn.ModuleList(ResidualStack(d, config["layers"]) for _ in range(config["vertical"]))

    @property
    def offsets(self) -> list[int]:
        """Horizontal head i guesses t+2+i; vertical head d guesses t+1+width*(d+1), below the next token."""
        w = self.config["width"]
        return list(range(1, self.num_heads + 1)) + [w * (d + 1) for d in range(self.config["vertical"])]

    def vertical_logits(self, hidden: torch.Tensor, heads: int | None = None) -> torch.Tensor:
        """hidden [..., dim] -> logits [..., vertical, vocab] (of the first `heads` vertical heads; default all)."""
        return torch.stack([self.lm_head(s(hidden)) for s in self.vertical[:heads]], -2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Medusa-style horizontal heads, what MedusaDrafter drafts with: hidden [..., dim] -> logits
        [..., horizontal, vocab] (the vertical heads run apart, on accepted states: `vertical_logits`)."""
        if self.config["horizontal"] != "medusa":
            raise ValueError("Hydra horizontal heads read drafted tokens: draft them with HydraDrafter on .rows")
        return torch.stack([self.lm_head(s(hidden)) for s in self.horizontal], -2)

    def train_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Every head, horizontal then vertical: [b, L, horizontal + vertical, vocab] (offsets: `offsets`)."""
        rows = self(hidden) if self.config["horizontal"] == "medusa" else self.rows.train_logits(hidden, tokens)
        return torch.cat([rows, self.vertical_logits(hidden)], -2)


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
                 backend: str = "auto"):
        """draws: 'top' keeps Hawk's tree; 'sample', and 'auto' (the default) when the decode samples under the
        lossless `sample` rule, draw the horizontal guesses as `HeadDrafter` does, and the vertical guesses only
        extend the drawn chain (see the class): Hawk's own tree picks cached guesses by their agreement with the
        drafted tokens, and a drawn guess whose place in the tree depends on its own value is no longer
        distributed as the q it is tested with. Under greedy decoding and the lossy rules 'auto' keeps Hawk's
        tree. dtype: the precision the heads draft in (default: `default_draft_dtype`). backend: how Hydra++
        rows' rounds run (`HydraDrafter`: auto, kernel, compile or eager)."""
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
        if backend == "compile" and not hydra:
            raise ValueError("backend 'compile' needs Hawk heads with Hydra++ rows; these have Medusa rows, which "
                             "draft eagerly: leave the backend at 'auto'")
        kw = dict(table=self.table, draws=draws, dtype=heads.lm_head.weight.dtype)  # the copy's: draft in it
        self.horizontal = (HydraDrafter(heads.rows, tree_size, **kw, backend=backend) if hydra else
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
