"""MCD with DTW and the cepstral speaker similarity behave as measures should."""
import numpy as np

from modalities.audio.metrics import dtw_path_cost, mel_cepstral_distortion, speaker_similarity


def voice(f0, seconds=1.0, sr=16000, formant=1.0, rate=1.0):
    t = np.arange(int(seconds * sr)) / sr
    vib = f0 * (1 + 0.05 * np.sin(2 * np.pi * 5 * rate * t))
    phase = 2 * np.pi * np.cumsum(vib) / sr
    x = sum(np.sin(k * phase) / k * (1.0 if k * f0 * formant < 1500 else 0.2) for k in range(1, 12))
    return (0.1 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * rate * t))).astype(np.float32)


def brute_dtw(cost):
    n, m = cost.shape
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = cost[i - 1, j - 1] + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
    return d[n, m]


def test_dtw_matches_the_textbook_recursion():
    rng = np.random.default_rng(0)
    for n, m in [(5, 7), (9, 4), (12, 12)]:
        cost = rng.random((n, m))
        assert abs(dtw_path_cost(cost)[0] - brute_dtw(cost)) < 1e-9


def test_mcd_is_zero_for_the_same_audio_and_grows_with_difference():
    a = voice(150)
    assert mel_cepstral_distortion(a, a) < 1e-6
    stretched = voice(150, seconds=1.3, rate=1 / 1.3)  # the same sound, slower
    other = voice(300, formant=2.0)
    assert mel_cepstral_distortion(stretched, a) < mel_cepstral_distortion(other, a)


def test_speaker_similarity_prefers_the_same_voice():
    a, a2, b = voice(150), voice(150, seconds=0.8, rate=1.2), voice(260, formant=1.8)
    assert speaker_similarity(a, a) > 0.999
    assert speaker_similarity(a, a2) > speaker_similarity(a, b)
