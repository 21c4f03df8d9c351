"""Independent heads on the last hidden state: Medusa and KOALA.

Medusa (Cai et al. 2024, "Medusa: Simple LLM Inference Acceleration Framework with Multiple Decoding Heads",
Sec. 2.1.1): head i is a residual block x + SiLU(W_i x) (W_i zero-initialised) followed by the target's LM head,
and guesses the token i+2 places after the hidden state's position.

KOALA (Zhang et al. 2024, "KOALA: Enhancing Speculative Decoding for LLM via Multi-Layer Draft Heads with
Adversarial Learning"): the same heads made K layers deep, trained with an adversarial loss beside
distillation (the loss lives in specgen.train.losses).

MedusaDrafter fills a static sparse tree from the heads' top-k (or draws) for both kinds.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..tree import DraftTree
from .heads import DraftHeads, HeadDrafter, register


class ResidualStack(nn.Module):
    """x + SiLU(W x), `layers` times; zero-initialised, so a fresh stack is the identity."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        for block in self.blocks:
            nn.init.zeros_(block.weight)
            nn.init.zeros_(block.bias)

    def forward(self, x):
        for block in self.blocks:
            x = x + F.silu(block(x))
        return x


@register("medusa")
class MedusaHeads(DraftHeads):
    default_layers = 1
    trims_vocab = True

    def __init__(self, config: dict, target):
        config = {"layers": self.default_layers, **config}
        super().__init__(config, target)
        self.stacks = nn.ModuleList(ResidualStack(config["hidden_size"], config["layers"])
                                    for _ in range(config["num_heads"]))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., dim] -> logits [..., heads, vocab]; head i guesses token t+2+i."""
        return torch.stack([self.lm_head(stack(hidden)) for stack in self.stacks], -2)

    def train_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self(hidden)


@register("koala")
class KoalaHeads(MedusaHeads):
    """Medusa heads K layers deep (K = config["layers"], 3 by default)."""

    default_layers = 3


class MedusaDrafter(HeadDrafter):
    """Independent heads read one hidden state; node (depth d, rank r) of the sparse tree gets head d's rank-r
    token."""

    @torch.inference_mode()
    def propose(self, k: int) -> DraftTree:
        _, depth, rank, parent = self.tree(k)
        logits = self.heads(self.h)[:, : max(depth) + 1]  # [batch, depth, vocab]
        self.forwards += 1
        top, q, ok = self.children(logits, max(rank) + 1)  # [batch, depth, ranks], every parent shares them
        parents = torch.tensor(parent, device=top.device).expand(top.shape[0], -1)
        return self.in_target(DraftTree(top[:, depth, rank], parents, ok[:, depth, rank],
                                        None if q is None else q[:, depth, rank]))
