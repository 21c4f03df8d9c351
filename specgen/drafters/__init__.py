"""Drafters: what proposes the tokens the target verifies."""
from __future__ import annotations

from .base import Drafter, ModelDrafter
from .draft_model import DraftModelDrafter
from .ngram import NgramDrafter
from .pard import PardDrafter, pard_token_of

MODEL_DRAFTERS = {"pard": PardDrafter, "draft_model": DraftModelDrafter}
METHODS = ("ar", "pard", "draft_model", "ngram")


def make_drafter(method: str, draft_model=None) -> Drafter | None:
    """The drafter for a method name; `ar` has none."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "ar":
        return None
    if method == "ngram":
        return NgramDrafter()
    if draft_model is None:
        raise ValueError(f"method {method!r} needs a draft model: pass draft=PATH")
    return MODEL_DRAFTERS[method](draft_model)


__all__ = ["Drafter", "ModelDrafter", "PardDrafter", "DraftModelDrafter", "NgramDrafter", "make_drafter",
           "pard_token_of", "METHODS"]
