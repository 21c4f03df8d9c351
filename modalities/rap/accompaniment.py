"""Accompaniment tokens that carry tempo and beat positions: the beat's tempo (from onset intervals), then one
token per eighth note of its grid saying which drum bands hit there (low, mid, high: kick, snare, hat).

    [tempo token] [grid token] [grid token] ...     one grid token per eighth note, 8 per 4/4 bar
"""
from __future__ import annotations

import numpy as np

from .beats import SR, onsets

TEMPO_MIN, TEMPO_MAX = 60, 160
BANDS = ((20, 200), (200, 2500), (5000, 8000))  # kick, snare body, hi-hat
TOKENS = (TEMPO_MAX - TEMPO_MIN + 1) + 2 ** len(BANDS)  # tempo tokens, then the 8 band patterns


def estimate_tempo(audio: np.ndarray, sr: int = SR) -> tuple[float, float]:
    """(bpm, time of the first beat): the eighth-note period that best explains the onsets, folded into
    60..160 BPM, and the phase that puts most onsets on its grid."""
    times = onsets(audio, sr)
    if len(times) < 4:
        raise ValueError("the beat has too few drum hits to find its tempo: give a beat with a steady pulse")
    best = None
    for bpm in np.arange(TEMPO_MIN, TEMPO_MAX + 0.5, 0.5):
        step = 30.0 / bpm  # an eighth note
        phase = (times % step) / step
        angle = np.angle(np.exp(2j * np.pi * phase).mean())
        offset = (angle / (2 * np.pi)) % 1.0 * step
        err = np.abs(((times - offset + step / 2) % step) - step / 2).mean() / step
        score = err - 0.002 * (bpm - 100) ** 2 / 100  # gentle preference for common rap tempi
        if best is None or score < best[0]:
            best = (score, float(bpm), float(offset))
    return best[1], best[2]


def band_hits(audio: np.ndarray, at: float, sr: int = SR, window: float = 0.04) -> int:
    """Which bands carry a hit right after time `at`: a 3-bit pattern (energy well above the band's median)."""
    i = int(at * sr)
    seg = audio[i : i + int(window * sr)]
    if len(seg) < 64:
        return 0
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1 / sr)
    bits = 0
    for b, (lo, hi) in enumerate(BANDS):
        band = spec[(freqs >= lo) & (freqs < hi)]
        if len(band) and band.mean() > 2.0:
            bits |= 1 << b
    return bits


def accompaniment_tokens(audio: np.ndarray, sr: int = SR) -> tuple[list[int], float, np.ndarray]:
    """Tokens (tempo first, then one per eighth note), the tempo, and the eighth-note grid times (s)."""
    if len(audio) < sr or float(np.sqrt(np.mean(audio ** 2))) < 1e-4:
        raise ValueError("the beat is silent or shorter than a second: give a drum loop with a steady pulse")
    bpm, first = estimate_tempo(audio, sr)
    step = 30.0 / bpm
    grid = np.arange(first, len(audio) / sr - step / 2, step)
    tempo_token = int(round(bpm)) - TEMPO_MIN
    offset = TEMPO_MAX - TEMPO_MIN + 1
    return [tempo_token] + [offset + band_hits(audio, t, sr) for t in grid], bpm, grid
