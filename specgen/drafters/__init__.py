"""Drafters: what proposes the tokens the target verifies."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Drafter, ModelDrafter
from .draft_model import DraftModelDrafter
from .hawk import HawkDrafter, HawkHeads
from .heads import DRAWS, KINDS, DraftHeads, load_heads
from .hydra import BACKENDS, HydraDrafter, HydraHeads
from .medusa import KoalaHeads, MedusaDrafter, MedusaHeads
from .ngram import NgramDrafter
from .pard import PardDrafter, pard_token_of
from .redrafter import BeamDrafter, RecurrentHead

MODEL_DRAFTERS = {"pard": PardDrafter, "draft_model": DraftModelDrafter}
HEAD_DRAFTERS = {"medusa": MedusaDrafter, "hydra": HydraDrafter, "koala": MedusaDrafter, "redrafter": BeamDrafter,
                 "hawk": HawkDrafter}
METHODS = ("ar", "pard", "draft_model", "ngram", *HEAD_DRAFTERS)
# the head methods that draw their guesses under the lossless `sample` rule by default (draws="auto"; Hawk then
# draws its horizontal guesses and leaves the cached vertical ones out, see `HawkDrafter`); ReDrafter never does
AUTO_DRAWN = tuple(m for m, cls in HEAD_DRAFTERS.items() if cls in (MedusaDrafter, HydraDrafter, HawkDrafter))


@dataclass(frozen=True)
class DraftConfig:
    """How the head methods draft, one object for every pipeline, the CLI and the demo.

    tree_size: candidate nodes per round for the tree-shaped head methods (None: the heads' measured CPU size,
    else by device, see `default_tree_size`). draws: how the Medusa, KOALA, Hydra++ and Hawk trees pick a node's
    children under sampling: 'top' (the heads' top-k), 'sample' (drawn from the heads) or 'auto' (drawn under the
    lossless `sample` rule; see `HeadDrafter`, and `HawkDrafter` for Hawk). dtype: the precision draft heads run
    in (None: `default_draft_dtype`, fp16 for fp32 heads on a CPU). backend: how Hydra++ rounds (Hydra++ and
    Hawk's Hydra++ rows) run: 'auto' (specgen's CPU kernel where it applies, else PyTorch, compiled if
    SPECGEN_COMPILE_DRAFT=1), 'kernel' (the kernel where it applies, else eager PyTorch), 'compile'
    (torch.compile) or 'eager' (see `HydraDrafter`). vertical: Hawk's vertical heads (False: horizontal only)."""

    tree_size: int | None = None
    draws: str = "auto"
    dtype: torch.dtype | None = None
    backend: str = "auto"
    vertical: bool = True

    def __post_init__(self):
        if self.tree_size is not None and self.tree_size < 1:
            raise ValueError(f"tree_size must be at least 1, got {self.tree_size}")
        if self.draws not in DRAWS:
            raise ValueError(f"draws must be one of {', '.join(DRAWS)}, got {self.draws!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")


def make_drafter(method: str, draft=None, drafting: DraftConfig | None = None,
                 rule: str | None = None) -> Drafter | None:
    """The drafter for a method name; `draft` is a draft model (pard, draft_model) or draft heads (head methods);
    `drafting`: how head methods draft (`DraftConfig`; default: its defaults); `rule`: the acceptance rule their
    tree is shaped for ('greedy', 'sample', 'tolerance:K'; see `tree_rule`)."""
    drafting = drafting or DraftConfig()
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if drafting.draws != "auto" and method not in AUTO_DRAWN:
        raise ValueError(f"draws={drafting.draws!r} applies to the {', '.join(AUTO_DRAWN)} head drafters, not to "
                         f"{method!r}: leave it at 'auto'")
    if drafting.backend == "compile" and method not in ("hydra", "hawk"):
        raise ValueError(f"backend 'compile' applies to the hydra and hawk drafters, not to {method!r}: leave it at "
                         f"'auto'")
    if not drafting.vertical and method != "hawk":
        raise ValueError(f"vertical=False applies to the hawk drafter, not to {method!r}: leave it at True")
    if method == "ar":
        return None
    if method == "ngram":
        return NgramDrafter()
    if draft is None:
        what = "draft heads" if method in HEAD_DRAFTERS else "a draft model"
        raise ValueError(f"method {method!r} needs {what}: pass draft=PATH")
    if method in HEAD_DRAFTERS:
        if not isinstance(draft, DraftHeads) or draft.kind != method:
            raise ValueError(f"method {method!r} needs {method} heads, but the draft is "
                             f"{getattr(draft, 'kind', 'a causal LM')}: pass the folder of {method} heads")
        if method == "redrafter":
            return HEAD_DRAFTERS[method](draft, dtype=drafting.dtype)
        extra = {"backend": drafting.backend} if method in ("hydra", "hawk") else {}
        if method == "hawk":
            extra["vertical"] = drafting.vertical
        return HEAD_DRAFTERS[method](draft, drafting.tree_size, rule=rule, draws=drafting.draws,
                                     dtype=drafting.dtype, **extra)
    if isinstance(draft, DraftHeads):
        raise ValueError(f"method {method!r} needs a draft model, but the draft holds {draft.kind} heads: use "
                         f"method={draft.kind!r}")
    return MODEL_DRAFTERS[method](draft)


def tree_rule(rule: str | None, temperature: float, options: dict | None = None) -> str:
    """The calibration key for a decode's acceptance rule: the rule the loop will use ('greedy' at temperature 0,
    else 'sample', when none is named), with a tolerance as 'tolerance:K'."""
    rule = rule or ("greedy" if temperature == 0 else "sample")
    return f"tolerance:{(options or {}).get('tolerance', 3)}" if rule == "tolerance" else rule


__all__ = ["AUTO_DRAWN", "BACKENDS", "BeamDrafter", "DRAWS", "DraftConfig", "DraftHeads", "DraftModelDrafter",
           "Drafter", "HEAD_DRAFTERS", "HawkDrafter", "HawkHeads", "HydraDrafter", "HydraHeads", "KINDS", "KoalaHeads",
           "METHODS", "MedusaDrafter", "MedusaHeads", "ModelDrafter", "NgramDrafter", "PardDrafter", "RecurrentHead",
           "load_heads", "make_drafter", "pard_token_of", "tree_rule"]
