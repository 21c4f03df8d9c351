"""Text generation with speculative decoding."""
from .pipeline import TextOutput, TextPipeline

__all__ = ["TextOutput", "TextPipeline"]
