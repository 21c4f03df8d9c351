"""specgen core: speculative decoding over any Hugging Face causal LM (draft, verify in one target forward, accept)."""
from .acceptance import RULES, get_rule
from .cached_lm import CachedLM
from .drafters import METHODS, DraftConfig, Drafter, make_drafter, tree_rule
from .loop import Generation, Stats, generate, stream
from .sampling import Sampling
from .tree import DraftTree

__all__ = ["CachedLM", "DraftConfig", "Drafter", "DraftTree", "Generation", "METHODS", "RULES", "Sampling", "Stats",
           "generate", "get_rule", "make_drafter", "stream", "tree_rule"]
