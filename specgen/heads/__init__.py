"""Draft heads: small networks on the target's own final hidden states that guess the tokens after the next one."""
from .base import KINDS, DraftHeads, load_heads
from .hydra import HydraHeads
from .medusa import KoalaHeads, MedusaHeads
from .redrafter import RecurrentHead

__all__ = ["DraftHeads", "HydraHeads", "KINDS", "KoalaHeads", "MedusaHeads", "RecurrentHead", "load_heads"]
