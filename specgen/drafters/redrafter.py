"""ReDrafter (Cheng et al. 2024, "Recurrent Drafter for Fast Speculative Decoding in Large Language Models"):
one recurrent head s_j = SiLU(W e(g_{j-1}) + U s_{j-1} + b) whose logits come from [h ; s_j]; drafting runs a
beam search whose beams are merged into a prefix tree and verified with tree attention (BeamDrafter)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..tree import DraftTree
from .heads import DraftHeads, HeadDrafter, prefix_tree, register
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


class BeamDrafter(HeadDrafter):
    """ReDrafter: a beam search of width `beam_width` with the recurrent head; the beams are merged into a prefix
    tree (shared prefixes become one node), so siblings are distinct tokens."""

    def __init__(self, heads: DraftHeads, beam_width: int = 4, dtype: torch.dtype | None = None):
        super().__init__(heads, dtype=dtype)
        self.beam_width = min(beam_width, heads.lm_head.weight.shape[0])

    @torch.inference_mode()
    def propose(self, k: int) -> DraftTree:
        heads, w = self.heads, self.beam_width
        depth = min(k, heads.num_heads)
        s = heads.state(heads.embed(self.root), None)  # [batch, dim]
        logp = heads.logits(self.h, s).float().log_softmax(-1)  # [batch, vocab]
        score, tok = logp.topk(w, -1)  # [batch, w]
        beams, s = tok[..., None], s[:, None].expand(-1, w, -1)
        h = self.h[:, None].expand(-1, w, -1)
        for _ in range(depth - 1):
            s = heads.state(heads.embed(beams[..., -1]), s)  # [batch, w, dim]
            cand = score[..., None] + heads.logits(h, s).float().log_softmax(-1)  # [batch, w, vocab]
            score, flat = cand.flatten(1).topk(w, -1)
            src, tok = flat // cand.shape[-1], flat % cand.shape[-1]
            beams = torch.cat([beams.gather(1, src[..., None].expand(-1, -1, beams.shape[-1])), tok[..., None]], -1)
            s = s.gather(1, src[..., None].expand(-1, -1, s.shape[-1]))
        self.forwards += 1
        return prefix_tree(beams.tolist(), self.h.device)
