"""ReDrafter (Cheng et al. 2024, "Recurrent Drafter for Fast Speculative Decoding in Large Language Models"):
one recurrent head s_j = SiLU(W e(g_{j-1}) + U s_{j-1} + b) whose logits come from [h ; s_j]; drafting runs a
beam search whose beams are merged into a prefix tree and verified with tree attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import DraftHeads, register
from .medusa import ResidualStack


@register("redrafter")
class RecurrentHead(DraftHeads):
    def __init__(self, config: dict, target):
        config = {"layers": 2, **config}
        super().__init__(config, target)
        d = config["hidden_size"]
        self.w = nn.Linear(d, d)  # token embedding -> state
        self.u = nn.Linear(d, d, bias=False)  # previous state -> state
        self.mix = nn.Linear(2 * d, d)  # [h ; s] -> model width
        self.stack = ResidualStack(d, config["layers"] - 1)

    def state(self, token_emb: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        x = self.w(token_emb)
        return F.silu(x if prev is None else x + self.u(prev))

    def logits(self, hidden: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.stack(self.mix(torch.cat([hidden, state], -1))))

    def train_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        pad = torch.cat([tokens, tokens[:, -1:].expand(-1, self.num_heads)], 1)
        s, out = None, []
        for j in range(self.num_heads):  # step j reads x_{t+1+j} and guesses x_{t+2+j}
            s = self.state(self.embed(pad[:, 1 + j : 1 + j + length]), s)
            out.append(self.logits(hidden, s))
        return torch.stack(out, -2)
