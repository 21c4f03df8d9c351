"""Hydra++ heads (Ankner et al. 2024, "Hydra: Sequentially-Dependent Draft Heads for Medusa Decoding"):
head i sees the context vector and the embeddings of every token between the hidden state's position and the
one it guesses, so its guess depends on the candidates drafted before it. Hydra++ adds a one-layer prefix
attention over the base hidden states to form the context vector, deeper head MLPs, and training by
distillation from the target's distribution (Sec. 4).

Here the prefix attention looks at the last `window` base hidden states (a sliding window keeps its inference
state to a small buffer per row).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from .base import DraftHeads, register, weights_state
from .medusa import ResidualStack


class PrefixAttention(nn.Module):
    """One pre-norm transformer layer over base hidden states, causal within a sliding window; no positions
    (the base states already carry them)."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.norm1, self.norm2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))
        nn.init.zeros_(self.out.weight)  # starts as the identity on the base hidden state
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def memory(self, hidden: torch.Tensor) -> torch.Tensor:
        """Keys and values [..., 2 * dim] of base hidden states [..., dim]; drafting keeps them with the window."""
        return kernels.linear(self.norm1(hidden), self.qkv.weight[hidden.shape[-1] :])

    def attend(self, queries: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """queries [b, q, dim] (normed) over keys and values memory [b, k, 2 * dim], mask [b, q, k] bool."""
        b, q, d = queries.shape
        qh = kernels.linear(queries, self.qkv.weight[:d]).view(b, q, self.heads, -1).transpose(1, 2)
        kh, vh = (t.reshape(b, memory.shape[1], self.heads, -1).transpose(1, 2) for t in memory.chunk(2, -1))
        att = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask[:, None])
        return self.out(att.transpose(1, 2).reshape(b, q, d))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Every position at once (training): hidden [b, L, dim] -> context [b, L, dim]."""
        length = hidden.shape[1]
        i = torch.arange(length, device=hidden.device)
        mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - self.window)
        h = hidden + self.attend(self.norm1(hidden), self.memory(hidden), mask.expand(hidden.shape[0], -1, -1))
        return h + self.mlp(self.norm2(h))

    def last(self, buffer: torch.Tensor, valid: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        """The newest position only (drafting): buffer [b, window, dim] (newest last), valid [b, window], and the
        buffer's `memory` when the caller kept it (else it is computed here)."""
        memory = self.memory(buffer) if memory is None else memory
        h = buffer[:, -1:] + self.attend(self.norm1(buffer[:, -1:]), memory, valid[:, None, :])
        return (h + self.mlp(self.norm2(h)))[:, 0]


@register("hydra")
class HydraHeads(DraftHeads):
    def __init__(self, config: dict, target):
        config = {"layers": 2, "window": 64, "attention_heads": 4, **config}
        super().__init__(config, target)
        d = config["hidden_size"]
        self.prefix = PrefixAttention(d, config["attention_heads"], config["window"])
        # head i reads [context; e(x_{t+1}); ...; e(x_{t+1+i})]
        self.inputs = nn.ModuleList(nn.Linear((i + 2) * d, d) for i in range(config["num_heads"]))
        self.stacks = nn.ModuleList(ResidualStack(d, config["layers"] - 1) for _ in range(config["num_heads"]))
        for lin in self.inputs:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def head(self, i: int, context: torch.Tensor, tokens: torch.Tensor, pre: torch.Tensor | None = None,
             tables: dict | None = None):
        """Head i: context [..., dim], tokens [..., i+1] (x_{t+1} .. x_{t+1+i}) -> logits [..., vocab]. `pre`: this
        head's `context_inputs` when the caller computed them for every head at once (drafting does, since the
        context is the same at every depth of a round); `tables`: `current_tables()` when the caller checked them
        once for several head calls (else they are checked here)."""
        if pre is None:
            pre = self.context_input(i, context)
        if tables is None:
            tables = self.current_tables()
        if tables is not None:  # the token part of the input layer looked up instead of multiplied
            pre = pre + tables["tokens"][i][tokens + tables["offsets"][i]].sum(-2)
        else:
            d = context.shape[-1]
            pre = pre + F.linear(self.embed(tokens).flatten(-2), self.inputs[i].weight[:, d:])  # [..., (i+1) * dim]
        x = self.stacks[i](F.silu(pre))
        return self.lm_head(context + x)

    def context_inputs(self, context: torch.Tensor, tables: dict | None = None) -> torch.Tensor:
        """Every head's input layer on the context part alone, bias included: context [..., dim] -> [..., heads,
        dim]; one product when the drafting tables are built (`tables` as in `head`)."""
        if tables is None:
            tables = self.current_tables()
        if tables is not None:
            return kernels.linear(context, tables["context"], tables["bias"]).unflatten(-1, (self.num_heads, -1))
        return torch.stack([self.context_input(i, context) for i in range(self.num_heads)], -2)

    def context_input(self, i: int, context: torch.Tensor) -> torch.Tensor:
        """Head i's input layer on the context part alone, bias included."""
        lin = self.inputs[i]
        return F.linear(context, lin.weight[:, : context.shape[-1]], lin.bias)

    def build_token_tables(self, max_bytes: int = 64 * 2**20) -> bool:
        """For drafting: fold each input layer's token columns into a table over the vocabulary (embedding @
        W_slot^T; per head one [(i+1) * vocab, dim] table, slot j's rows at offset j * vocab), so a head call
        gathers one row per path token instead of reading a (path length x dim x dim) block of weights, and stack
        the heads' context columns into one matrix (`context_inputs`). Same function up to float rounding; built
        only when the tables fit in `max_bytes` (small vocabularies: speech, image, rap), refreshed if the weights
        change, and never used with gradients on (training). Returns whether tables are in use."""
        built = getattr(self, "_tables", None)
        if built is not None and built[0] == self._weight_versions():
            return True  # already built for these weights (drafters are made per call; build once)
        self._tables = None
        d = self.inputs[0].weight.shape[0]
        emb = self.embed.weight
        vocab = emb.shape[0]
        slots = sum(i + 1 for i in range(self.num_heads))
        if slots * vocab * d * emb.element_size() > max_bytes:
            return False
        with torch.no_grad():
            weights = [lin.weight for lin in self.inputs]
            tables = {"context": torch.cat([w[:, :d] for w in weights]),
                      "bias": torch.cat([lin.bias for lin in self.inputs]),
                      "tokens": [torch.cat([emb @ w[:, d * (j + 1) : d * (j + 2)].t()
                                            for j in range(w.shape[1] // d - 1)]) for w in weights],
                      "offsets": [torch.arange(w.shape[1] // d - 1, device=emb.device) * vocab for w in weights]}
        self._tables = (self._weight_versions(), tables)
        return True

    def _weight_versions(self) -> tuple:
        """The state of what the tables are built from (`weights_state`). The tensors are listed once (a head call
        checks this, and walking the modules costs more than the check)."""
        tensors = self.__dict__.get("_sources")
        if tensors is None:
            tensors = self._sources = [self.embed.weight, *(t for lin in self.inputs for t in (lin.weight, lin.bias))]
        return weights_state(tensors)

    def current_tables(self) -> dict | None:
        """The tables if a drafter asked for them and gradients are off, rebuilt first if the weights changed in
        place since; else None."""
        if torch.is_grad_enabled() or getattr(self, "_tables", None) is None or not self.build_token_tables():
            return None
        return self._tables[1]

    def train_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        context = self.prefix(hidden)
        length = tokens.shape[1]
        pad = torch.cat([tokens, tokens[:, -1:].expand(-1, self.num_heads + 1)], 1)  # positions past the end
        ahead = torch.stack([pad[:, j : j + length] for j in range(1, self.num_heads + 2)], -1)  # x_{t+1+j}
        return torch.stack([self.head(i, context, ahead[..., : i + 1]) for i in range(self.num_heads)], -2)
