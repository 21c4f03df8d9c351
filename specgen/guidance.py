"""Classifier-free guidance as a target: every row runs twice in one batch, with its conditioning and without,
and the guided logits uncond + scale * (cond - uncond) are what sampling and acceptance see (Ho and Salimans
2022; as in autoregressive image models such as LlamaGen). Both halves verify the same draft tree and commit the
same accepted path, so speculative decoding with guidance stays exactly as lossless as without."""
from __future__ import annotations

from typing import Callable

import torch

from .cached_lm import CachedLM


class GuidedLM:
    """Wraps a CachedLM; batch rows [0, n) are conditioned, rows [n, 2n) their unconditioned twins."""

    def __init__(self, lm: CachedLM, scale: float, uncond: Callable[[list[int]], list[int]]):
        if scale < 0:
            raise ValueError(f"the guidance scale must be >= 0 (1 is no guidance), got {scale}")
        self.lm, self.scale, self.uncond = lm, scale, uncond
        self.device, self.vocab, self.dtype = lm.device, lm.vocab, lm.dtype

    @property
    def forwards(self) -> int:
        return self.lm.forwards

    @property
    def hidden(self):
        h = self.lm.hidden
        return None if h is None else h[: h.shape[0] // 2]  # drafters read the conditioned half

    def keep_hidden(self):
        self.lm.keep_hidden()

    def check_length(self, total: int):
        self.lm.check_length(total)

    def guide(self, logits: torch.Tensor) -> torch.Tensor:
        cond, uncond = logits.float().chunk(2)
        return uncond + self.scale * (cond - uncond)

    def prefill(self, rows: list[list[int]]) -> torch.Tensor:
        return self.guide(self.lm.prefill(rows + [self.uncond(r) for r in rows]))

    def step(self, tokens, parents=None, valid=None):
        two = lambda t: None if t is None else torch.cat([t, t])
        return self.guide(self.lm.step(two(tokens), two(parents), two(valid)))

    def commit(self, keep: list[list[int]]):
        self.lm.commit(keep + keep)

    def select(self, rows: torch.Tensor):
        self.lm.select(torch.cat([rows, rows + self.lm.batch // 2]))
