"""Prompt lookup decoding: draft the tokens that followed the latest earlier occurrence of the current suffix
(Saxena 2023, "Prompt Lookup Decoding"). No model."""
from __future__ import annotations

import numpy as np

from ..tree import DraftTree
from .base import Drafter, ragged


def lookup(context: np.ndarray, k: int, max_n: int, min_n: int) -> list[int]:
    """Up to k tokens that followed the most recent earlier match of the longest suffix (max_n down to min_n)."""
    size = len(context)
    for n in range(min(max_n, size - 1), min_n - 1, -1):
        suffix = context[size - n:]
        windows = np.lib.stride_tricks.sliding_window_view(context[: size - 1], n)  # starts 0 .. size-1-n
        hits = np.flatnonzero((windows == suffix).all(1))
        hits = hits[hits + n < size]  # the continuation must start before the end
        if len(hits):
            start = int(hits[-1]) + n
            return context[start: start + k].tolist()
    return []


class NgramDrafter(Drafter):
    """Prompt lookup over each row's prompt and output so far."""

    name = "ngram"

    def __init__(self, max_n: int = 3, min_n: int = 1):
        if not 1 <= min_n <= max_n:
            raise ValueError(f"ngram sizes need 1 <= min_n <= max_n, got min_n={min_n}, max_n={max_n}")
        self.max_n, self.min_n = max_n, min_n

    def start(self, prompts, first, sampling, vocab, device, generator=None, hidden=None):
        super().start(prompts, first, sampling, vocab, device, generator)
        self.context = [list(p) + [t] for p, t in zip(prompts, first)]

    def propose(self, k: int) -> DraftTree:
        found = [lookup(np.asarray(c), k, self.max_n, self.min_n) for c in self.context]
        tokens, valid = ragged(found, self.device)
        return DraftTree.chain(tokens, valid)

    def accept(self, emitted, paths=None, hidden=None):
        for c, e in zip(self.context, emitted):
            c.extend(e)

    def select(self, rows):
        self.context = [self.context[r] for r in rows]
