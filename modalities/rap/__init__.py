"""Rap: Freestyler-style lyrics and a beat in, rapped vocals out, the token stage decoded speculatively."""
from .pipeline import RapPipeline, RapResult

__all__ = ["RapPipeline", "RapResult"]
