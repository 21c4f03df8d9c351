"""Drum beats made with numpy (kick, snare, closed hi-hat on a 4/4 grid), and onset detection for measuring how
well vocals sit on the beat."""
from __future__ import annotations

import numpy as np

SR = 16000


def kick(sr: int = SR) -> np.ndarray:
    t = np.arange(int(0.25 * sr)) / sr
    freq = 40 + 80 * np.exp(-t * 25)  # a falling sine: 120 Hz down to 40 Hz
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t * 12)


def snare(rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    t = np.arange(int(0.18 * sr)) / sr
    noise = rng.standard_normal(len(t))
    noise = np.convolve(noise, np.ones(3) / 3, mode="same")  # a gentle low-pass
    return 0.5 * noise * np.exp(-t * 25) + 0.3 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 30)


def hat(rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    t = np.arange(int(0.05 * sr)) / sr
    noise = rng.standard_normal(len(t))
    return 0.25 * np.diff(noise, prepend=0.0) * np.exp(-t * 80)  # a difference is a crude high-pass


def beat(bpm: float, bars: int, seed: int = 0, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """A drum loop and its beat times in seconds (quarter notes). Kick on 1 and 3 (sometimes the 'and' of 3),
    snare on 2 and 4, hi-hat on every eighth."""
    rng = np.random.default_rng(seed)
    quarter = 60.0 / bpm
    length = int(bars * 4 * quarter * sr) + sr // 4
    out = np.zeros(length)
    k, h = kick(sr), hat(rng, sr)

    def put(sample, at):
        i = int(at * sr)
        n = min(len(sample), length - i)
        out[i : i + n] += sample[:n]

    beats = np.arange(bars * 4) * quarter
    for b, at in enumerate(beats):
        if b % 4 in (0, 2):
            put(k, at)
        if b % 4 == 2 and rng.random() < 0.4:
            put(0.7 * k, at + quarter / 2)
        if b % 4 in (1, 3):
            put(snare(rng, sr), at)
        put(h, at)
        put(0.6 * h, at + quarter / 2)
    return (0.5 * out / np.abs(out).max()).astype(np.float32), beats


def onsets(audio: np.ndarray, sr: int = SR, hop: int = 160, threshold: float = 0.3) -> np.ndarray:
    """Onset times (s): peaks of positive spectral flux above `threshold` of its maximum, at least 80 ms apart."""
    n_fft = 512
    frames = 1 + (len(audio) - n_fft) // hop
    if frames < 3:
        return np.zeros(0)
    idx = np.arange(n_fft)[None] + hop * np.arange(frames)[:, None]
    mag = np.abs(np.fft.rfft(audio[idx] * np.hanning(n_fft), axis=1))
    flux = np.maximum(0.0, np.diff(np.log1p(mag), axis=0)).sum(1)
    if flux.max() < 1.0:  # no frame gains real energy anywhere: steady sound, no hits
        return np.zeros(0)
    flux /= flux.max()
    peaks = [i for i in range(1, len(flux) - 1) if flux[i] > threshold and flux[i] >= flux[i - 1]
             and flux[i] > flux[i + 1]]
    kept, last = [], -1e9
    for p in peaks:
        t = (p + 1) * hop / sr + n_fft / (2 * sr)
        if t - last >= 0.08:
            kept.append(t)
            last = t
    return np.array(kept)


def word_onsets(vocals: np.ndarray, sr: int = SR, frame: int = 160, rel: float = 0.05, quiet: int = 3) -> np.ndarray:
    """Word starts in a vocal stem (s): where the 10 ms RMS envelope rises above `rel` of its peak after at least
    `quiet` frames below half that. Syllables inside a word do not count, which spectral flux would."""
    n = len(vocals) // frame
    if n == 0:
        return np.zeros(0)
    rms = np.sqrt((vocals[: n * frame].reshape(n, frame) ** 2).mean(1))
    high = rel * rms.max()
    out, below = [], quiet
    for i, v in enumerate(rms):
        if v < 0.5 * high:
            below += 1
        elif v > high and below >= quiet:
            out.append(i * frame / sr)
            below = 0
        else:
            below = 0
    return np.array(out)


def beat_alignment(vocal_onsets: np.ndarray, beat_times: np.ndarray, tolerance: float = 0.05) -> float:
    """Share of vocal onsets within `tolerance` seconds of an eighth-note grid point of the beat."""
    if len(vocal_onsets) == 0:
        return 0.0
    step = (beat_times[1] - beat_times[0]) / 2 if len(beat_times) > 1 else 0.25
    grid = np.arange(beat_times[0], beat_times[-1] + 2 * step, step)
    dist = np.abs(vocal_onsets[:, None] - grid[None]).min(1)
    return float((dist <= tolerance).mean())
