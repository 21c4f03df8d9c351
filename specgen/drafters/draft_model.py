"""Classic speculative decoding with a small autoregressive draft model: K sequential draft steps
(Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding")."""
from __future__ import annotations

import torch

from ..tree import DraftTree
from .base import ModelDrafter, ragged


class DraftModelDrafter(ModelDrafter):
    """Feeds the row's new tokens, then each drafted token in turn; after verification the draft cache keeps
    the accepted drafts and drops the rest."""

    name = "draft_model"

    def propose(self, k: int) -> DraftTree:
        real, valid = ragged(self.pending, self.lm.device)
        logits = self.lm.step(self.to_draft(real), valid=valid)
        last = torch.tensor([len(p) - 1 for p in self.pending], device=real.device)
        step_logits = logits[torch.arange(real.shape[0], device=real.device), last][:, None]  # [batch, 1, vocab]
        drafts, qs = [], []
        for i in range(k):
            tok, q = self.draw(step_logits)
            drafts.append(tok)
            qs.append(q)
            if i + 1 < k:
                step_logits = self.lm.step(self.to_draft(tok))
        self.width, self.fed = real.shape[1], k - 1  # pending layout: [width real/holes][k-1 drafts]
        q = torch.cat(qs, 1) if qs[0] is not None else None
        return DraftTree.chain(torch.cat(drafts, 1), q=q)

    def accept(self, emitted, paths=None, hidden=None):
        keep = []
        for p, e in zip(self.pending, emitted):
            n = min(len(e) - 1, self.fed)  # accepted drafts already in the draft cache
            keep.append(list(range(len(p))) + list(range(self.width, self.width + n)))
        self.lm.commit(keep)
        self.pending = [list(e[min(len(e) - 1, self.fed):]) for e in emitted]
