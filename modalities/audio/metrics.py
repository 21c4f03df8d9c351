"""Quality measures for generated speech and vocals: mel-cepstral distortion after DTW alignment, and a speaker
similarity from cepstral statistics (no pretrained speaker encoder can be had here, so this is a coarse,
timbre-level measure; it says so wherever it is reported)."""
from __future__ import annotations

import math

import numpy as np
import torch

from .features import STFT_RESOLUTIONS, MelConfig, log_mel, multi_resolution_magnitudes


def mfcc(audio: np.ndarray, cfg: MelConfig = MelConfig(), n: int = 25) -> np.ndarray:
    """Cepstra [frames, n] from the log-mel (orthonormal DCT-II over the mel bands)."""
    mel = log_mel(torch.as_tensor(audio, dtype=torch.float32), cfg).numpy()  # [frames, bands]
    bands = mel.shape[1]
    k = np.arange(n)[:, None]
    basis = np.cos(np.pi / bands * (np.arange(bands)[None] + 0.5) * k) * np.sqrt(2.0 / bands)
    basis[0] /= np.sqrt(2.0)
    return mel @ basis.T


def dtw_path_cost(cost: np.ndarray) -> tuple[float, int]:
    """Total cost and length of the cheapest monotone alignment through cost [n, m] (steps right, down,
    diagonal). Each row is a prefix-minimum scan, so the work is vectorised along the row."""
    n, m = cost.shape
    acc = np.full(m, np.inf)
    steps = np.zeros(m)
    prev, prev_steps = None, None
    for i in range(n):
        if prev is None:
            acc = np.cumsum(cost[0])
            steps = np.arange(1, m + 1, dtype=float)
        else:
            # from above (i-1, j) or the diagonal (i-1, j-1)
            diag = np.concatenate([[np.inf], prev[:-1]])
            diag_steps = np.concatenate([[0.0], prev_steps[:-1]])
            take_diag = diag < prev
            a = np.where(take_diag, diag, prev)
            a_steps = np.where(take_diag, diag_steps, prev_steps)
            # then any run to the right along row i: acc[j] = min_k<=j (a[k] + sum cost[i, k..j])
            s = np.cumsum(cost[i])
            before = np.concatenate([[0.0], s[:-1]])
            score = a - before
            best = np.minimum.accumulate(score)
            arg = np.maximum.accumulate(np.where(score == best, np.arange(m), 0))
            acc = s + best
            steps = a_steps[arg] + (np.arange(m) - arg + 1)
        prev, prev_steps = acc, steps
    return float(acc[-1]), int(steps[-1])


def mel_cepstral_distortion(generated: np.ndarray, reference: np.ndarray, cfg: MelConfig = MelConfig()) -> float:
    """MCD in dB over cepstra 1..24 (c0, the loudness, left out) along the DTW alignment of the two. The cepstra
    are scaled to the usual convention (log amplitude = sum_k c_k cos(k w), as in SPTK mel-cepstra), so
    the figures are on the familiar scale (a few dB for close speech), not the orthonormal DCT's."""
    scale = math.sqrt(2.0 / cfg.n_mels)
    a, b = scale * mfcc(generated, cfg)[:, 1:], scale * mfcc(reference, cfg)[:, 1:]
    dist = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # [n, m]
    total, length = dtw_path_cost(dist)
    return (10.0 / math.log(10.0)) * math.sqrt(2.0) * total / length


def speaker_similarity(a: np.ndarray, b: np.ndarray, cfg: MelConfig = MelConfig()) -> float:
    """Cosine similarity of utterance-level cepstral statistics (means and deviations of cepstra 1..24)."""
    def embed(x):
        c = mfcc(x, cfg)[:, 1:]
        e = np.concatenate([c.mean(0), c.std(0)])
        return e / (np.linalg.norm(e) + 1e-9)

    return float(embed(a) @ embed(b))


def log_spectral_distance(generated: np.ndarray, reference: np.ndarray,
                          resolutions: tuple[tuple[int, int], ...] = STFT_RESOLUTIONS) -> float:
    """Root-mean-square difference of log10 power spectra in dB, averaged over STFT resolutions, for two
    time-aligned signals (a vocoder's copy synthesis against its source). Re-analysing at resolutions other than
    the vocoder's own shows phase incoherence (smearing between frames) that a mel distance alone misses. Powers
    are floored 60 dB below the reference's peak."""
    n = min(len(generated), len(reference))
    if n < 2048:
        raise ValueError("log_spectral_distance needs at least 2048 samples of each signal")
    g, r = (torch.from_numpy(np.asarray(x[:n], np.float32)) for x in (generated, reference))
    out = []
    for mg, mr in zip(multi_resolution_magnitudes(g, resolutions), multi_resolution_magnitudes(r, resolutions)):
        pg, pr = mg.pow(2), mr.pow(2)  # [frames, bins]
        floor = pr.max().clamp(min=1e-10) * 1e-6  # a 60 dB range: silence does not dominate
        pg, pr = pg.clamp(min=floor), pr.clamp(min=floor)
        out.append((10 * (pg.log10() - pr.log10())).pow(2).mean(-1).sqrt().mean().item())
    return float(np.mean(out))
