"""Drafting from heads on the target's hidden state: a static candidate tree filled from each head's top-k
(Medusa), verified in one target forward."""
from __future__ import annotations

import torch

from ..heads.base import DraftHeads
from ..tree import DraftTree, sparse_tree, tree_tensors
from .base import Drafter


def default_accuracy(num_heads: int, ranks: int = 8) -> list[list[float]]:
    """A prior for untrained or uncalibrated heads: deeper heads and lower ranks are right less often."""
    return [[0.6 ** (d + 1) / (r + 1) for r in range(ranks)] for d in range(num_heads)]


class MedusaDrafter(Drafter):
    """Each round the heads read the target's hidden state at the last accepted node and fill a sparse tree of
    `tree_size` candidates from their top-k; the tree's token-rank layout is fixed, its tokens are not."""

    name = "medusa"
    needs_hidden = True

    def __init__(self, heads: DraftHeads, tree_size: int = 32):
        if tree_size < 1:
            raise ValueError(f"tree_size must be >= 1, got {tree_size}")
        self.heads = heads
        accuracy = heads.config.get("topk_accuracy") or default_accuracy(heads.num_heads)
        self.paths = sparse_tree(accuracy, tree_size)
        self.forwards = 0

    def start(self, prompts, first, sampling, vocab, device, generator=None, hidden=None):
        super().start(prompts, first, sampling, vocab, device, generator)
        self.h = hidden  # [batch, dim] hidden state whose next token is the pending root

    @torch.inference_mode()
    def propose(self, k: int) -> DraftTree:
        paths = [p for p in self.paths if len(p) <= k]
        depth, rank, parent = tree_tensors(paths)
        logits = self.heads(self.h)  # [batch, heads, vocab]
        self.forwards += 1
        top = logits[:, : max(depth) + 1].topk(max(rank) + 1, dim=-1).indices  # [batch, depth, ranks]
        b = self.h.shape[0]
        tokens = top[:, depth, rank]  # [batch, nodes]
        parents = torch.tensor(parent, device=tokens.device).expand(b, -1)
        return DraftTree(tokens, parents, torch.ones_like(tokens, dtype=torch.bool))

    def accept(self, emitted, paths, hidden=None):
        last = torch.tensor([p[-1] for p in paths], device=hidden.device)
        self.h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def select(self, rows):
        self.h = self.h[rows]
