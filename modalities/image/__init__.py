"""Image: text-to-image over VQ tokens with Hawk spatial draft heads."""
from .pipeline import ImagePipeline, ImageResult

__all__ = ["ImagePipeline", "ImageResult"]
