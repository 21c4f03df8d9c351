"""Draft heads: small networks on the target's own final hidden states that guess the tokens after the next one."""
from .base import KINDS, DraftHeads, load_heads
from .hawk import HawkHeads
from .hydra import HydraHeads
from .medusa import KoalaHeads, MedusaHeads
from .redrafter import RecurrentHead

__all__ = ["DraftHeads", "HawkHeads", "HydraHeads", "KINDS", "KoalaHeads", "MedusaHeads", "RecurrentHead", "load_heads"]
