"""Draft heads: small networks on the target's own final hidden states that guess the tokens after the next one."""
from .base import DraftHeads, load_heads
from .medusa import MedusaHeads

__all__ = ["DraftHeads", "MedusaHeads", "load_heads"]
