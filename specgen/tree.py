"""Draft trees: tokens, parent links and validity per batch row, and the attention structure they imply.

A chain is the tree whose node i has parent i-1. Nodes are stored in topological order (a parent's index is
smaller than its child's). Parent -1 means "hangs under the root", the last token already emitted.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DraftTree:
    """What a drafter proposes after each row's last emitted token."""

    tokens: torch.Tensor  # [batch, nodes] long
    parents: torch.Tensor  # [batch, nodes] long, -1 = child of the root
    valid: torch.Tensor  # [batch, nodes] bool; invalid nodes are padding and are never accepted
    q: torch.Tensor | None = None  # [batch, nodes, vocab]: what each token was drawn from; None: deterministic

    @property
    def size(self) -> int:
        return self.tokens.shape[1]

    @staticmethod
    def chain(tokens: torch.Tensor, valid: torch.Tensor | None = None, q: torch.Tensor | None = None) -> "DraftTree":
        """A chain of drafted tokens [batch, k]; invalid entries must come after the valid ones in each row."""
        b, k = tokens.shape
        parents = torch.arange(-1, k - 1, device=tokens.device).expand(b, k)
        if valid is None:
            valid = torch.ones(b, k, dtype=torch.bool, device=tokens.device)
        return DraftTree(tokens, parents, valid, q)

    @staticmethod
    def empty(batch: int, device: torch.device) -> "DraftTree":
        z = torch.zeros(batch, 0, dtype=torch.long, device=device)
        return DraftTree(z, z.clone(), z.bool())

    def trim(self, keep_nodes: int) -> "DraftTree":
        """The first `keep_nodes` nodes (topological order keeps it a tree)."""
        q = self.q[:, :keep_nodes] if self.q is not None else None
        return DraftTree(self.tokens[:, :keep_nodes], self.parents[:, :keep_nodes], self.valid[:, :keep_nodes], q)

    def with_root(self, roots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The verification tree (tokens, parents, valid): the root (last emitted token, [batch]) at index 0, then
        the drafts."""
        b = roots.shape[0]
        tokens = torch.cat([roots[:, None], self.tokens], 1)
        parents = torch.cat([torch.full((b, 1), -1, device=roots.device, dtype=torch.long), self.parents + 1], 1)
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=roots.device), self.valid], 1)
        return tokens, parents, valid


def ancestry(parents: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestor-or-self matrix [batch, n, n] (anc[b, i, j]: node j is on node i's path) and depth [batch, n].

    Invalid nodes see only themselves (so no attention row is empty) and are seen by nobody else.
    """
    b, n = parents.shape
    eye = torch.eye(n, dtype=torch.bool, device=parents.device).expand(b, n, n)
    if n == 0:
        return eye, parents
    # reach[i, j]: j is i's parent; square repeatedly to close over ancestors (log2 n products)
    par = parents.clamp(min=0)
    step = torch.zeros(b, n, n, dtype=torch.float32, device=parents.device)
    step.scatter_(2, par[..., None], (parents >= 0).float()[..., None])
    reach = eye.float() + step
    for _ in range(max(1, (n - 1).bit_length())):
        reach = (reach @ reach).clamp(max=1.0)
    anc = reach.bool() & valid[:, None, :] | eye
    anc &= valid[:, :, None] | eye
    depth = (anc.sum(-1) - 1).masked_fill(~valid, 0)
    return anc, depth


def best_first(first: list[tuple[float, tuple]], expand, size: int) -> list[tuple]:
    """Up to `size` paths of a tree of candidates, best first: `first` holds (rate, path) for the root's children,
    `expand(path)` yields (rate, child) for a chosen path's children, and a path scores the product of the rates
    along it. Every prefix of a chosen path is chosen before it; once the best left scores 0, nothing more is
    (though the first path is always kept, so a tree is never empty). Paths come out in the order chosen."""
    import heapq

    heap = [(-rate, path) for rate, path in first]
    heapq.heapify(heap)
    chosen = []
    while heap and len(chosen) < size:
        neg, path = heapq.heappop(heap)
        if neg >= 0 and chosen:  # best-first: everything left scores 0 too
            break
        chosen.append(path)
        for rate, child in expand(path):
            heapq.heappush(heap, (neg * rate, child))
    return chosen


def sparse_tree(accuracy: list[list[float]], size: int) -> list[tuple[int, ...]]:
    """The `size` candidate paths most likely to be accepted, as Medusa builds its sparse trees (Sec. 2.1.2).

    accuracy[d][r]: how often rank r of head d is the right token. A path (r0, r1, ...) takes rank r_d at depth
    d and scores the product of its accuracies; best-first search keeps every prefix of a chosen path. Paths that
    can never be accepted (score 0) are left out, so the tree may be smaller than `size`. Paths come out in
    breadth-first order, so a parent always precedes its children.
    """
    def expand(path):
        d = len(path)
        return [(accuracy[d][r], path + (r,)) for r in range(len(accuracy[d]))] if d < len(accuracy) else []

    chosen = best_first([(accuracy[0][r], (r,)) for r in range(len(accuracy[0]))], expand, size)
    return sorted(chosen, key=lambda p: (len(p), p))


def best_paths(rates: dict[tuple, float], size: int) -> list[tuple]:
    """The `size` candidate paths most likely to be accepted from an explicit set of them: `rates` maps every
    candidate (a tuple of tokens; its prefixes are candidates too) to the acceptance rate of its last node, and a
    path scores the product along it. A parent precedes its children; paths that can never be accepted (score
    0) are left out."""
    children: dict[tuple, list[tuple]] = {}
    for p, rate in rates.items():
        if rate > 0:
            children.setdefault(p[:-1], []).append(p)
    def expand(path):
        return [(rates[c], c) for c in children.get(path, [])]

    return best_first(expand(()), expand, size)


def tree_tensors(paths: list[tuple[int, ...]]) -> tuple[list[int], list[int], list[int]]:
    """For candidate paths with every parent before its children: each node's depth (0-based head index), rank,
    parent index."""
    index = {p: i for i, p in enumerate(paths)}
    return [len(p) - 1 for p in paths], [p[-1] for p in paths], [index.get(p[:-1], -1) for p in paths]
