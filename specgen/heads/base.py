"""What every kind of draft head shares: a config, saving beside a target, and loading onto it.

Heads reuse the target's LM head for their vocabulary projections (the zoo stores no copy of it), so loading
needs the target model.
"""
from __future__ import annotations

import copy
import json
import os
from abc import ABC, abstractmethod

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..kernels import narrow_matmuls
from ..loading import storage_tensors

KINDS: dict[str, type] = {}


def register(kind: str):
    def deco(cls):
        cls.kind = kind
        KINDS[kind] = cls
        return cls
    return deco


class DraftHeads(nn.Module, ABC):
    """Base class: `config` is plain JSON; the target's LM head and token embeddings are attached, not owned
    (neither trained nor saved)."""

    kind = "heads"

    def __init__(self, config: dict, target):
        super().__init__()
        self.config = dict(config)
        # a list keeps the target's modules out of this module's parameters and state dict
        self._target = [target.get_output_embeddings(), target.get_input_embeddings()]

    @property
    def lm_head(self) -> nn.Module:
        return self._target[0]

    @property
    def embed(self) -> nn.Module:
        return self._target[1]

    @property
    def num_heads(self) -> int:
        return self.config["num_heads"]

    @property
    def offsets(self) -> list[int]:
        """Head j at position t guesses the token at t + 1 + offsets[j] (Medusa-style heads: t+2, t+3, ...)."""
        return list(range(1, self.num_heads + 1))

    def drafting_copy(self, dtype: torch.dtype) -> "DraftHeads":
        """These heads in `dtype`, with their own copies of the target's LM head and embeddings (the target keeps
        its own), for drafting; self when they already are in `dtype`. Kept and reused until a weight changes or
        moves; the copy shares this object's config, so settings changed later (a tree size, say) apply to it.
        Guesses are checked by the target, so the heads' precision moves speed, never what is accepted."""
        tensors = [*self.parameters(), *(m.weight for m in self._target)]
        if all(t.dtype == dtype for t in tensors):
            return self
        key = (dtype, weights_state(tensors))
        kept = self.__dict__.get("_drafting")
        if kept is not None and kept[0] == key:
            return kept[1]
        own = [m for m in self.modules() if isinstance(m, DraftHeads)]  # Hawk's Hydra++ rows are heads too
        aside = [{k: m.__dict__.pop(k) for k in ("_drafting", "_tables", "_sources") if k in m.__dict__} for m in own]
        try:
            clone = copy.deepcopy(self)  # the target's modules too (through _target), shared ones once
        finally:
            for m, kept_state in zip(own, aside):
                m.__dict__.update(kept_state)
        for original, m in zip(own, [m for m in clone.modules() if isinstance(m, DraftHeads)]):
            m.config = original.config
            m._target = [t.to(dtype) for t in m._target]
            for t in m._target:  # a copied forward hook (CachedLM's hidden-state listener) would only cost time
                t._forward_hooks.clear()
                t._forward_pre_hooks.clear()
        self._drafting = (key, clone.to(dtype).eval())
        return clone

    @abstractmethod
    def train_logits(self, hidden, tokens):
        """Teacher-forced training view: hidden [batch, L, dim] and tokens [batch, L] -> logits
        [batch, L, heads, vocab], where entry (t, i) guesses token t+2+i."""

    def save(self, path: str, dtype: torch.dtype | None = None):
        """heads.safetensors (in `dtype`, default as trained; loading casts to the target's), then heads.json (kind
        and config), each written whole under a temporary name."""
        os.makedirs(path, exist_ok=True)
        weights = os.path.join(path, "heads.safetensors")
        save_file(storage_tensors(self.state_dict(), dtype), weights + ".tmp")
        os.replace(weights + ".tmp", weights)
        write_json(os.path.join(path, "heads.json"), {"kind": self.kind, **self.config})

    def accuracy_for(self, rule: str | None = None) -> list[list[float]] | None:
        """The calibration table that shapes trees for an acceptance rule ('sample', 'tolerance:3', ...), falling
        back to the greedy table (`topk_accuracy`) when that rule was not calibrated."""
        return (self.config.get("rule_accuracy") or {}).get(rule) or self.config.get("topk_accuracy")


def weights_state(tensors) -> tuple:
    """What identifies the current values of some weights: each tensor's storage, in-place version, dtype and
    device. Anything built from them (a drafting copy, lookup tables) is stale once this changes."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)


def write_json(path: str, data: dict):
    """Write a JSON file whole under a temporary name, then move it into place."""
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)


def write_config(path: str, updates: dict):
    """Merge `updates` into the heads.json of a heads folder (the weights stay as they are)."""
    meta = os.path.join(path, "heads.json")
    with open(meta) as f:
        config = json.load(f)
    write_json(meta, {**config, **updates})


def load_heads(path: str, target_model, narrow: bool = False) -> DraftHeads:
    """Heads saved by `DraftHeads.save`, attached to `target_model` (same device and dtype); `narrow`: their
    `nn.Linear` layers compute few rows by specgen's CPU products (`specgen.kernels.narrow_matmuls`)."""
    meta = os.path.join(path, "heads.json")
    if not os.path.isfile(meta):
        raise ValueError(f"{path!r} holds no draft heads (no heads.json): train them with `specgen train-heads`")
    with open(meta) as f:
        config = json.load(f)
    kind = config.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"{path!r} holds heads of unknown kind {kind!r}: known kinds are {sorted(KINDS)}")
    hidden = target_model.get_output_embeddings().weight.shape[1]
    if config.get("hidden_size") != hidden:
        raise ValueError(f"the heads in {path!r} were trained for hidden size {config.get('hidden_size')}, but this "
                         f"target's is {hidden}: train heads for this target")
    param = next(target_model.parameters())
    heads = KINDS[kind](config, target_model)
    heads.load_state_dict(load_file(os.path.join(path, "heads.safetensors")))
    heads = heads.to(device=param.device, dtype=param.dtype).eval()
    return narrow_matmuls(heads) if narrow else heads
