"""Drafters: what proposes the tokens the target verifies."""
from __future__ import annotations

from .base import Drafter, ModelDrafter
from .draft_model import DraftModelDrafter
from .hawk import HawkDrafter, HawkHeads
from .heads import KINDS, DraftHeads, load_heads
from .hydra import HydraDrafter, HydraHeads
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


def make_drafter(method: str, draft=None, tree_size: int | None = None, rule: str | None = None,
                 draws: str = "auto", dtype=None, compile: bool | None = None, vertical: bool = True) -> Drafter | None:
    """The drafter for a method name; `draft` is a draft model (pard, draft_model) or draft heads (head methods).
    `tree_size`: candidate nodes per round for the tree-shaped head methods (default: by device, see
    `default_tree_size`); `rule`: the acceptance rule their tree is shaped for ('greedy', 'sample',
    'tolerance:K'; see `tree_rule`); `draws`: how the Medusa, KOALA, Hydra++ and Hawk trees pick a node's
    children under sampling ('top', 'sample' or 'auto'; see `HeadDrafter`, and `HawkDrafter` for Hawk);
    `dtype`: the precision draft heads run in (default `default_draft_dtype`: fp16 for fp32 heads on a CPU);
    `compile`: how Hydra++ and Hawk (Hydra++ rows) draft rounds run: True, compiled by torch.compile; False,
    eager PyTorch; None (the default), rounds by specgen's CPU kernel where it applies, else PyTorch, compiled if
    SPECGEN_COMPILE_DRAFT=1 (see `HydraDrafter`); `vertical`: False drafts Hawk with its horizontal heads only."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if draws != "auto" and method not in AUTO_DRAWN:  # the head drafters check the value itself
        raise ValueError(f"draws={draws!r} applies to the {', '.join(AUTO_DRAWN)} head drafters, not to "
                         f"{method!r}: leave it at 'auto'")
    if compile and method not in ("hydra", "hawk"):
        raise ValueError(f"compile=True applies to the hydra and hawk drafters, not to {method!r}: leave it unset")
    if not vertical and method != "hawk":
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
        if tree_size is not None and tree_size < 1:
            raise ValueError(f"tree_size must be at least 1, got {tree_size}")
        if method == "redrafter":
            return HEAD_DRAFTERS[method](draft, dtype=dtype)
        extra = {"compile": compile} if method in ("hydra", "hawk") else {}
        if method == "hawk":
            extra["vertical"] = vertical
        return HEAD_DRAFTERS[method](draft, tree_size, rule=rule, draws=draws, dtype=dtype, **extra)
    if isinstance(draft, DraftHeads):
        raise ValueError(f"method {method!r} needs a draft model, but the draft holds {draft.kind} heads: use "
                         f"method={draft.kind!r}")
    return MODEL_DRAFTERS[method](draft)


def tree_rule(rule: str | None, temperature: float, options: dict | None = None) -> str:
    """The calibration key for a decode's acceptance rule: the rule the loop will use ('greedy' at temperature 0,
    else 'sample', when none is named), with a tolerance as 'tolerance:K'."""
    rule = rule or ("greedy" if temperature == 0 else "sample")
    return f"tolerance:{(options or {}).get('tolerance', 3)}" if rule == "tolerance" else rule


__all__ = ["tree_rule", "Drafter", "ModelDrafter", "PardDrafter", "DraftModelDrafter", "NgramDrafter", "MedusaDrafter",
           "HydraDrafter", "BeamDrafter", "HawkDrafter", "make_drafter", "pard_token_of", "METHODS", "HEAD_DRAFTERS",
           "AUTO_DRAWN", "DraftHeads", "HawkHeads", "HydraHeads", "KINDS", "KoalaHeads", "MedusaHeads", "RecurrentHead",
           "load_heads"]
