"""Logits processing (temperature, top-k, top-p), applied identically in `ar` and every speculative method."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; temperature 0 means greedy (argmax)."""

    temperature: float = 0.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off

    def __post_init__(self):
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 turns it off), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (1 turns it off), got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Target (or draft) distribution after temperature, top-k and top-p: logits [..., vocab] -> fp32 probs."""
        assert not self.greedy, "greedy decoding takes the argmax, not a distribution"
        logits = logits.float()
        if self.temperature != 1.0:  # (x / 1.0 is x: one operation fewer per call at the common setting)
            logits = logits / self.temperature
        if self.top_k and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            # keep the smallest set of tokens, by descending probability, whose mass reaches top_p
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop_sorted = (cum - sorted_logits.softmax(-1)) >= self.top_p  # mass before this token already enough
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        return logits.softmax(-1)

    def pick(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One token per row: argmax when greedy, else a draw from `probs`; logits [rows, vocab] -> [rows]."""
        if self.greedy:
            return logits.argmax(-1)
        return torch.multinomial(self.probs(logits), 1, generator=generator).squeeze(-1)


def draw_distinct(q: torch.Tensor, n: int, generator: torch.Generator | None = None,
                  noise: torch.Tensor | None = None):
    """n distinct tokens drawn in order without replacement from q [..., vocab], the distribution each was drawn
    from [..., n, vocab], and whether it is a real draw [..., n] (False once q has fewer than n tokens with mass).
    The draws are an exponential race: with E_x independent Exp(1) noise, the token with the largest q(x) / E_x
    is a draw from q, and the n largest are distributed as n successive draws, each from q renormalized over the
    tokens not drawn yet (the Gumbel top-k trick: -log E_x is Gumbel noise on log q(x)). One noise tensor and one
    argmax or top-k: fewer operations a round than an inverse CDF or repeated multinomials on a CPU.
    Recursive rejection over siblings drawn this way, each tested against its own renormalized q, is lossless
    (Jeon et al. 2024, "Recursive Speculative Decoding"; `accept_sample`). `noise`: the Exp(1) draws, shaped like
    q, when the caller drew them already (a compiled draft round takes its randomness as an input)."""
    keys = q / (torch.empty_like(q).exponential_(generator=generator) if noise is None else noise)
    if n == 1:  # one child (the common chain case)
        tokens = keys.argmax(-1, keepdim=True)  # a token without mass wins only when q has none: invalid
        return tokens, q[..., None, :], q.gather(-1, tokens) > 0
    tokens = keys.topk(n, -1).indices
    left, lefts = q, [q]
    for j in range(1, n):  # q without the draws before draw j, renormalized
        left = left.scatter(-1, tokens[..., j - 1 : j], 0.0)
        total = left.sum(-1, keepdim=True)  # summed, not 1 - q(x): the mass left may be far below any floor
        lefts.append(left / torch.where(total > 0, total, 1.0))
    left = torch.stack(lefts, -2)  # [..., n, vocab]
    # a draw is real only where its own distribution gives it mass: not where q ran out of tokens, nor where
    # the mass left after the earlier draws is too small for fp32 (a zero q(x) would pass any acceptance test)
    return tokens, left, left.gather(-1, tokens[..., None])[..., 0] > 0
