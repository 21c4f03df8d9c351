"""PARD: a small causal LM drafts K tokens in one forward by appending K-1 mask tokens (An et al. 2025,
"PARD: Accelerating LLM Inference with Low-Cost PARallel Draft Model Adaptation")."""
from __future__ import annotations

import torch

from ..tree import DraftTree
from .base import ModelDrafter, ragged


def pard_token_of(config) -> int:
    """The reserved mask token id of a PARD draft (`config.pard_token`, as in the published checkpoints)."""
    tok = getattr(config, "pard_token", None)
    if not isinstance(tok, int) or tok < 0:
        raise ValueError("this draft has no `pard_token` in its config, so it was not adapted for parallel "
                         "drafting: use method='draft_model' with it, or a PARD-adapted draft")
    return tok


class PardDrafter(ModelDrafter):
    """Each round feeds the row's new tokens then K-1 mask tokens at the next positions under a plain causal mask;
    the logits of the last real token and of the masks are the K drafts. Mask entries leave the cache afterwards."""

    name = "pard"

    def __init__(self, model):
        super().__init__(model)
        self.mask_id = pard_token_of(model.config)
        if self.mask_id >= self.lm.vocab:
            raise ValueError(f"pard_token {self.mask_id} is outside the draft's vocabulary of {self.lm.vocab}")

    def check_length(self, total: int):
        self.lm.check_length(total)

    def propose(self, k: int) -> DraftTree:
        real, real_valid = ragged(self.pending, self.lm.device)  # [batch, width] target ids
        real = self.to_draft(real)
        b, width = real.shape
        masks = torch.full((b, k - 1), self.mask_id, dtype=torch.long, device=real.device)
        tokens = torch.cat([real, masks], 1)
        valid = torch.cat([real_valid, torch.ones_like(masks, dtype=torch.bool)], 1)
        logits = self.lm.step(tokens, valid=valid)  # [batch, width + k - 1, vocab]
        last = torch.tensor([len(p) - 1 for p in self.pending], device=real.device)
        first = logits[torch.arange(b, device=real.device), last]  # the last real token predicts draft 1
        drafts, q = self.draw(torch.cat([first[:, None], logits[:, width:]], 1))  # [batch, k]
        self.lm.commit([list(range(len(p))) for p in self.pending])  # keep the real tokens, drop the masks
        return DraftTree.chain(drafts, q=q)

    def accept(self, emitted, paths=None, hidden=None):
        self.pending = [list(e) for e in emitted]
