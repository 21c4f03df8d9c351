"""Medusa heads (Cai et al. 2024, "Medusa: Simple LLM Inference Acceleration Framework with Multiple Decoding
Heads", Sec. 2.1.1): head i is a residual block x + SiLU(W_i x) (W_i zero-initialised) followed by the target's
LM head, and predicts the token i+2 places after the hidden state's position."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import DraftHeads, register


@register("medusa")
class MedusaHeads(DraftHeads):
    def __init__(self, config: dict, lm_head: nn.Module):
        super().__init__(config, lm_head)
        d, n = config["hidden_size"], config["num_heads"]
        self.blocks = nn.ModuleList(nn.Linear(d, d) for _ in range(n))
        for block in self.blocks:
            nn.init.zeros_(block.weight)
            nn.init.zeros_(block.bias)

    @property
    def num_heads(self) -> int:
        return len(self.blocks)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., dim] -> logits [..., heads, vocab]; head i guesses token t+2+i."""
        return torch.stack([self.lm_head(hidden + F.silu(block(hidden))) for block in self.blocks], -2)

    def train_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced training view: hidden [batch, L, dim] -> [batch, L, heads, vocab] (tokens unused)."""
        return self(hidden)
