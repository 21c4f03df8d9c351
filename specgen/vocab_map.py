"""A draft with a trimmed output vocabulary: its ids map to a subset of the target's (EAGLE-3's draft-to-target
map, Li et al. 2025, "EAGLE-3: Scaling up Inference Acceleration of Large Language Models via Training-Time Test").

The draft's config carries `draft_to_target` (one target id per draft id it can predict). Target tokens outside
the subset enter the draft as its unknown id (`draft_unk_token`); the draft's probabilities are scattered into the
target's vocabulary and are zero elsewhere, so the lossless rule holds unchanged (q is a true distribution over the
target's vocabulary)."""
from __future__ import annotations

import hashlib
import json

import torch


class VocabMap:
    """Target ids -> draft ids for the draft's input, draft logits -> target-vocabulary logits for its output."""

    def __init__(self, draft_to_target: list[int], unk: int, draft_vocab: int, target_vocab: int, device=None):
        d2t = torch.tensor(draft_to_target, dtype=torch.long)
        if d2t.numel() == 0 or int(d2t.min()) < 0 or len(set(draft_to_target)) != len(draft_to_target):
            raise ValueError("draft_to_target must list distinct target ids, one per draft id")
        if int(d2t.max()) >= target_vocab:
            raise ValueError(f"the draft maps to target id {int(d2t.max())}, beyond the target's vocabulary of "
                             f"{target_vocab}: this draft was made for a larger vocabulary (another tokenizer)")
        if not len(draft_to_target) <= unk < draft_vocab:
            raise ValueError(f"draft_unk_token {unk} must be a draft id outside the mapped {len(draft_to_target)}")
        self.d2t = d2t.to(device)
        t2d = torch.full((target_vocab,), unk, dtype=torch.long)
        t2d[d2t] = torch.arange(len(d2t))
        self.t2d = t2d.to(device)
        self.unk, self.draft_vocab, self.target_vocab = unk, draft_vocab, target_vocab

    @classmethod
    def of(cls, config, draft_vocab: int, target_vocab: int, device=None) -> "VocabMap | None":
        """The map a draft's config declares, or None for a draft that predicts the target's own ids."""
        d2t = getattr(config, "draft_to_target", None)
        if d2t is None:
            return None
        return cls(d2t, int(config.draft_unk_token), draft_vocab, target_vocab, device)

    def to_draft(self, ids: torch.Tensor) -> torch.Tensor:
        """Target ids (any shape) as draft input ids."""
        return self.t2d[ids]

    def to_target(self, logits: torch.Tensor) -> torch.Tensor:
        """Draft logits [..., draft_vocab] as target logits [..., target_vocab]: -inf outside the mapped ids, so
        the unknown and mask ids are never proposed."""
        return self.scatter(logits, float("-inf"))

    def probs_to_target(self, probs: torch.Tensor) -> torch.Tensor:
        """Draft probabilities [..., draft_vocab] as target probabilities [..., target_vocab], zero elsewhere."""
        return self.scatter(probs, 0.0)

    def scatter(self, values: torch.Tensor, fill: float) -> torch.Tensor:
        """Per-draft-id values [..., draft_vocab] at their target ids [..., target_vocab], `fill` elsewhere."""
        out = values.new_full((*values.shape[:-1], self.target_vocab), fill)
        out[..., self.d2t] = values[..., : len(self.d2t)]
        return out

    def fold(self, probs: torch.Tensor) -> torch.Tensor:
        """Target probabilities [..., target_vocab] as [..., mapped + 1]: the mapped ids' own, then the mass of every
        other id in one slot. Rejection sampling against a draft that is zero outside the map takes the same
        decisions over the folded distribution (a residual max(p - q, 0) leaves the unmapped mass as it was)."""
        mapped = probs[..., self.d2t]
        return torch.cat([mapped, (1 - mapped.sum(-1, keepdim=True)).clamp(min=0)], -1)


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of a tokenizer's pieces and ids: a trimmed draft stores its target's, and loading checks it."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()[:16]
