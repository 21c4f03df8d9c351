"""Speech: speech-token TTS with VADUSA draft heads and tolerance acceptance."""
from .pipeline import SpeechPipeline, SpeechResult

__all__ = ["SpeechPipeline", "SpeechResult"]
