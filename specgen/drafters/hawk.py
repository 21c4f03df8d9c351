"""Hawk heads (Chen et al. 2025, "Hawk: Leveraging Spatial Context for Faster Autoregressive Text-to-Image
Generation"): for a raster of image tokens `width` wide, horizontal heads guess the next tokens in the row and
vertical heads guess the tokens one or more rows below, which the drafter keeps in a speculation cache until
the raster reaches them.

The horizontal heads are Medusa residual blocks by default (`horizontal: "medusa"`, as in the paper), or Hydra++
heads (`horizontal: "hydra"`) that also read the tokens drafted before the one they guess, so a guess follows
the token the target actually sampled. The vertical heads are residual blocks on the target's hidden state
either way (they guess a whole row ahead, where the tokens in between are not drafted)."""
from __future__ import annotations

import torch
from torch import nn

from .base import DraftHeads, register
from .hydra import HydraHeads
from .medusa import ResidualStack

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
