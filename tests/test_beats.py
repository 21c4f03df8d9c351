"""Beats land where they should, and the onset-based alignment measure can tell on-beat from off-beat."""
import numpy as np

from modalities.rap.beats import SR, beat, beat_alignment, onsets, word_onsets


def clicks(times, seconds):
    x = np.zeros(int(seconds * SR), dtype=np.float32)
    for t in times:
        i = int(t * SR)
        x[i : i + 400] += np.sin(2 * np.pi * 900 * np.arange(400) / SR) * np.exp(-np.arange(400) / 80)
    return x


def test_beat_is_deterministic_and_its_onsets_sit_on_the_grid():
    a, beats = beat(96, 2, seed=1)
    b, _ = beat(96, 2, seed=1)
    assert np.array_equal(a, b) and len(beats) == 8 and np.abs(a).max() <= 0.5 + 1e-6
    assert beat_alignment(onsets(a), beats) > 0.9


def test_alignment_separates_on_grid_from_off_grid_onsets():
    _, beats = beat(100, 2)
    step = (beats[1] - beats[0]) / 2
    on = clicks(beats[:6] + 0.01, 6.0)
    off = clicks(beats[:6] + step / 2, 6.0)  # halfway between eighth notes
    assert beat_alignment(onsets(on), beats) > 0.8
    assert beat_alignment(onsets(off), beats) < 0.2


def test_word_onsets_find_word_starts_not_syllables():
    _, beats = beat(90, 2)
    x = clicks(beats[:5], 5.0)
    found = word_onsets(x)
    assert len(found) == 5 and np.abs(found - beats[:5]).max() < 0.02
    assert beat_alignment(found, beats) == 1.0


def test_rap_verses_rhyme_in_pairs():
    import random

    from modalities.rap.data import rhyme_key, verse

    groups = {rhyme_key("day"): ["day", "away", "say"], rhyme_key("night"): ["night", "light", "bright"]}
    runs = [["we", "walk", "the", "road"], ["and", "you", "see", "the"]]
    lines = verse(runs, groups, random.Random(0))
    last = [ln.split()[-1] for ln in lines]
    assert len(lines) == 4 and last[0] != last[1] and last[2] != last[3]
    assert rhyme_key(last[0]) == rhyme_key(last[1]) and rhyme_key(last[2]) == rhyme_key(last[3])


def test_accompaniment_tokens_find_the_tempo_and_the_drums():
    from modalities.rap.accompaniment import TEMPO_MIN, accompaniment_tokens

    for bpm in (84, 96, 108):
        audio, beats = beat(bpm, 4, seed=bpm)
        tokens, found, grid = accompaniment_tokens(audio)
        assert abs(found - bpm) <= 1.0 and tokens[0] == round(found) - TEMPO_MIN
        assert abs(len(grid) - 4 * 4 * 2) <= 2  # eighth notes of four bars
        assert len(set(tokens[1:])) >= 2  # kicks, snares and hats differ


def test_silent_or_pulseless_beats_are_refused():
    import pytest

    from modalities.rap.accompaniment import accompaniment_tokens

    with pytest.raises(ValueError, match="silent"):
        accompaniment_tokens(np.zeros(SR * 3, dtype=np.float32))
    with pytest.raises(ValueError, match="too few drum hits"):
        accompaniment_tokens(np.sin(np.arange(SR * 3) / 5).astype(np.float32) * 0.3)


def test_beat_command_writes_a_loop_and_refuses_bad_tempi(tmp_path, capsys):
    from specgen_apps.cli import main
    from modalities.audio.features import load_audio

    out = tmp_path / "beat.wav"
    assert main(["beat", "--bpm", "90", "--bars", "3", "--out", str(out)]) == 0
    audio = load_audio(str(out), 16000)
    assert abs(len(audio) / 16000 - (3 * 4 * 60 / 90 + 0.25)) < 0.05
    assert main(["beat", "--bpm", "300", "--out", str(tmp_path / "x.wav")]) == 2
    assert "60-160" in capsys.readouterr().err and not (tmp_path / "x.wav").exists()
