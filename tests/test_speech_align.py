"""The aligned speech stream: durations to frame boundaries, interleaving and its inverse, and Piper's own
alignment (when the onnx package is there)."""
import numpy as np
import pytest

from modalities.speech.align import deinterleave, frame_bounds, interleave


def test_frame_bounds_are_monotone_cover_every_frame_and_do_not_drift():
    rng = np.random.default_rng(0)
    for _ in range(50):
        seconds = rng.choice([0.0, 0.0116, 0.0232, 0.0464, 0.07], size=rng.integers(1, 40))
        frames = int(round(seconds.sum() * 50)) + 1
        b = frame_bounds(seconds, frames, 50)
        assert len(b) == len(seconds) and b[-1] == frames
        assert all(x <= y for x, y in zip(b, b[1:])) and b[0] >= 0
        ends = np.cumsum(seconds) * 50  # every boundary within half a frame of the true end time
        assert np.all(np.abs(np.asarray(b[:-1]) - ends[:-1]) <= 0.5 + 1e-9)
    assert frame_bounds([0.01, 0.005], 3, 50) == [0, 3]  # a short first symbol covers no frame
    with pytest.raises(ValueError):
        frame_bounds([0.1], 5, 0)


def test_interleave_round_trips():
    symbols, frames = [-1, -2, -3], [10, 11, 12, 13, 14]
    seq = interleave(symbols, [2, 2, 5], frames)
    assert seq == [-1, 10, 11, -2, -3, 12, 13, 14]
    got, syms, owner = deinterleave(seq, lambda i: i < 0)
    assert got == frames and syms == symbols and owner == [0, 0, 2, 2, 2]
    with pytest.raises(ValueError, match="cover"):
        interleave(symbols, [2, 2, 4], frames)
    with pytest.raises(ValueError, match="decrease"):
        interleave(symbols, [3, 2, 5], frames)


def test_piper_alignment_covers_its_audio_and_matches_its_phonemizer():
    pytest.importorskip("onnx")
    pytest.importorskip("piper")
    import torch

    from modalities.audio.features import log_mel
    from modalities.audio.piper import PiperReader

    reader = PiperReader()
    text = "Where did you leave the blue umbrella? It rained."
    clip = reader.read(text)
    assert clip.symbols == reader.symbols(text) and clip.symbols.count("^") == 2
    assert abs(sum(clip.seconds) - len(clip.audio) / clip.sample_rate) < 0.01
    frames = len(log_mel(torch.from_numpy(clip.audio)))
    b = frame_bounds(clip.seconds, frames, 50)
    assert b[-1] == frames and abs(frames - b[-2] - clip.seconds[-1] * 50) <= 1.5  # `$` is the trailing silence
