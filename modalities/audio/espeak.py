"""What the speech and rap data and pipelines take from espeak-ng: IPA phonemes, and speech in many voices."""
from __future__ import annotations

import subprocess
import tempfile

import numpy as np

from .features import load_audio

ESPEAK_TRAIN = [f"{lang}+{v}" for lang in ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-gbclan")
                for v in ("f1", "f2", "f3", "m1", "m2", "m3", "m4")]
ESPEAK_HELDOUT = ["en-gb-x-rp+f4", "en-us+m7", "en-gb-x-gbcwmd+f5"]  # never used for training


def run_espeak(args: list[str]) -> str:
    try:
        return subprocess.run(["espeak-ng", *args], capture_output=True, text=True, check=True).stdout
    except FileNotFoundError as e:
        raise ValueError("espeak-ng is not installed: apt-get install espeak-ng (scripts/setup.sh does)") from e


def phonemes(text: str) -> str:
    """espeak-ng's IPA for a sentence (en-us), one string."""
    return " ".join(run_espeak(["-q", "--ipa", "-v", "en-us", text]).split())


def speak(text: str, voice: str, pitch: int = 50, rate: int = 160, sample_rate: int = 16000) -> np.ndarray:
    """espeak-ng speech for `text` in `voice` (e.g. en-us+f3) at a pitch (0-99) and rate (words per minute)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        run_espeak(["-v", voice, "-p", str(pitch), "-s", str(rate), "-w", f.name, text])
        return load_audio(f.name, sample_rate)
