"""The losses draft heads train with: distillation towards the target's distributions (KL, total variation), and
KOALA's adversarial pair (a discriminator on head vs target distributions, and the heads' fooling loss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def aligned(head_logits: torch.Tensor, target_logits: torch.Tensor, offsets: list[int] | None = None):
    """Per head j: its guesses at positions t and the target's logits for the same tokens (the target's prediction
    at t + offsets[j]; offsets default to 1, 2, ... for heads that guess t+2, t+3, ...), where both exist.
    head_logits [b, L, heads, V], target_logits [b, L, V]."""
    length = head_logits.shape[1]
    for j, off in enumerate(offsets or range(1, head_logits.shape[2] + 1)):
        span = length - off
        if span > 0:
            yield j, head_logits[:, :span, j], target_logits[:, off : off + span]


LOSSES = ("kl", "tv", "kl+tv")


def distill_loss(head_logits: torch.Tensor, target_logits: torch.Tensor, decay: float = 0.8,
                 offsets: list[int] | None = None, kind: str = "kl"):
    """Sum over heads j of decay**j * the head's distance from the target: KL(target || head j) ("kl"), their total
    variation ("tv"), or both added ("kl+tv"). Returns the loss and each head's mean distance.

    Total variation is what a guess drawn from the head loses under the lossless rule: such a guess is kept with
    probability sum_x min(p(x), q(x)) = 1 - TV(p, q) (DistillSpec, Zhou et al. 2024, trains drafts on it). KL
    spreads a head's mass over everything the target might say; TV rewards overlap alone."""
    if kind not in LOSSES:
        raise ValueError(f"unknown distillation loss {kind!r}: use one of {', '.join(LOSSES)}")
    total, per_head = 0.0, []
    for i, head, teacher in aligned(head_logits, target_logits, offsets):
        log_q, log_p = F.log_softmax(head.float(), -1), F.log_softmax(teacher.float(), -1)  # shared by both terms
        kl = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1).mean() if kind != "tv" else 0.0
        tv = 0.5 * (log_q.exp() - log_p.exp()).abs().sum(-1).mean() if kind != "kl" else 0.0
        loss = kl + tv
        per_head.append(loss.item())
        total = total + decay**i * loss
    return total, per_head


class Discriminator(torch.nn.Module):
    """KOALA's adversary: tells the target's next-token distribution from a head's, given the hidden state."""

    def __init__(self, dim: int, vocab: int):
        super().__init__()
        self.proj = torch.nn.Linear(vocab, dim, bias=False)
        self.net = torch.nn.Sequential(torch.nn.Linear(2 * dim, dim), torch.nn.SiLU(), torch.nn.Linear(dim, 1))

    def forward(self, hidden: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([hidden, self.proj(probs)], -1)).squeeze(-1)


def discriminator_loss(disc: Discriminator, hidden, head_logits, target_logits):
    """KOALA (Zhang et al. 2024, Sec. 3.2): the target's distributions are real, the heads' (detached) fake."""
    bce, loss = F.binary_cross_entropy_with_logits, 0.0
    for _, head, teacher in aligned(head_logits, target_logits):
        h = hidden[:, : head.shape[1]].float()
        r, f = disc(h, teacher.float().softmax(-1)), disc(h, head.detach().float().softmax(-1))
        loss = loss + bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
    return loss


def fooling_loss(disc: Discriminator, hidden, head_logits, target_logits):
    """The heads' adversarial loss: how well their distributions pass for the target's."""
    loss = 0.0
    for _, head, _ in aligned(head_logits, target_logits):
        g = disc(hidden[:, : head.shape[1]].float(), head.float().softmax(-1))
        loss = loss + F.binary_cross_entropy_with_logits(g, torch.ones_like(g))
    return loss
