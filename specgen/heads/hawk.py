"""Hawk heads (Chen et al. 2025, "Hawk: Leveraging Spatial Context for Faster Autoregressive Text-to-Image
Generation"): for a raster of image tokens `width` wide, horizontal heads guess the next tokens in the row and
vertical heads guess the tokens one or more rows below, which the drafter keeps in a speculation cache until
the raster reaches them."""
from __future__ import annotations

import torch
from torch import nn

from .base import DraftHeads, register
from .medusa import ResidualStack


@register("hawk")
class HawkHeads(DraftHeads):
    def __init__(self, config: dict, target):
        config = {"layers": 1, "vertical": 2, "width": 16, **config}
        super().__init__(config, target)
        d = config["hidden_size"]
        self.horizontal = nn.ModuleList(ResidualStack(d, config["layers"]) for _ in range(config["num_heads"]))
        self.vertical = nn.ModuleList(ResidualStack(d, config["layers"]) for _ in range(config["vertical"]))

    @property
    def offsets(self) -> list[int]:
        """Horizontal head i guesses t+2+i; vertical head d guesses t+1+width*(d+1), below the next token."""
        w = self.config["width"]
        return list(range(1, self.num_heads + 1)) + [w * (d + 1) for d in range(self.config["vertical"])]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., dim] -> logits [..., horizontal + vertical, vocab]."""
        return torch.stack([self.lm_head(s(hidden)) for s in (*self.horizontal, *self.vertical)], -2)

    def train_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self(hidden)
