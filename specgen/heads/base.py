"""What every kind of draft head shares: a config, saving beside a target, and loading onto it.

Heads reuse the target's LM head for their vocabulary projections (the zoo stores no copy of it), so loading
needs the target model.
"""
from __future__ import annotations

import json
import os

from safetensors.torch import load_file, save_file
from torch import nn

KINDS: dict[str, type] = {}


def register(kind: str):
    def deco(cls):
        cls.kind = kind
        KINDS[kind] = cls
        return cls
    return deco


class DraftHeads(nn.Module):
    """Base class: `config` is plain JSON; the target's LM head is attached, not owned (not saved)."""

    kind = "heads"

    def __init__(self, config: dict, lm_head: nn.Module):
        super().__init__()
        self.config = dict(config)
        self._lm_head = [lm_head]  # a list keeps it out of this module's parameters and state dict

    @property
    def lm_head(self) -> nn.Module:
        return self._lm_head[0]

    def save(self, path: str):
        """heads.safetensors, then heads.json (kind and config), each written whole under a temporary name."""
        os.makedirs(path, exist_ok=True)
        weights = os.path.join(path, "heads.safetensors")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, weights + ".tmp")
        os.replace(weights + ".tmp", weights)
        meta = os.path.join(path, "heads.json")
        with open(meta + ".tmp", "w") as f:
            json.dump({"kind": self.kind, **self.config}, f, indent=1)
        os.replace(meta + ".tmp", meta)


def load_heads(path: str, target_model) -> DraftHeads:
    """Heads saved by `DraftHeads.save`, attached to `target_model` (same device and dtype)."""
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
    heads = KINDS[kind](config, target_model.get_output_embeddings())
    heads.load_state_dict(load_file(os.path.join(path, "heads.safetensors")))
    return heads.to(device=param.device, dtype=param.dtype).eval()
