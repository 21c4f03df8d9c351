"""The words judge: Whisper base hears espeak-ng's reading of a sentence, and WER counts word edits only."""
import pytest

from modalities.audio.recognizer import Recognizer, normalize, word_error_rate


def test_normalize_ignores_case_and_punctuation():
    assert normalize("Where did you leave the blue umbrella?") == "where did you leave the blue umbrella"
    assert normalize("  It's well-known, isn't it!") == "it's well known isn't it"


def test_word_error_rate_counts_edits_over_reference_words():
    assert word_error_rate(["the cat sat on the mat"], ["The cat sat on the mat."]) == 0.0
    assert word_error_rate(["the cat sat on the mat"], ["the dog sat on mat"]) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="no words"):
        word_error_rate(["?!"], ["anything"])


def test_whisper_hears_espeak_read_a_sentence():
    from modalities.audio.espeak import speak

    text = "The quick brown fox jumps over the lazy dog."
    audio = speak(text, "en-us", sample_rate=22050)
    rec = Recognizer()
    wer, heard = rec.wer([text], [audio], 22050)
    assert wer <= 0.25, heard
    words = rec.words(audio, 22050)  # with word timestamps: in order, inside the clip
    starts = [t for _, t in words]
    assert [w for w, _ in words][:2] == ["the", "quick"] and starts == sorted(starts)
    assert 0 <= starts[0] and starts[-1] < len(audio) / 22050


def test_wer_command_needs_one_text_per_file(capsys):
    from specgen_apps.cli import main

    assert main(["wer", "--audio", "a.wav", "b.wav", "--text", "one text"]) == 2
    assert "give one --text per file" in capsys.readouterr().err


def test_on_slot_counts_words_heard_near_their_slot():
    from modalities.audio.recognizer import on_slot

    words, slots = ["We", "walk", "the", "road"], [1.0, 1.5, 2.0, 2.5]
    heard = [("we", 1.05), ("walked", 1.5), ("the", 2.4), ("road", 2.55)]  # one misheard, one late
    assert on_slot(words, slots, heard, 0.3) == 0.5
    assert on_slot(words, slots, [], 0.3) == 0.0
    with pytest.raises(ValueError, match="one slot per word"):
        on_slot(words, slots[:2], heard, 0.3)
    # with the audio's own onsets the timestamps are not used: "the" now starts on time, but one onset cannot
    # serve two words, and a heard word with no onset near its slot misses
    assert on_slot(words, slots, heard, 0.3, onsets=[1.0, 2.05, 2.5]) == 0.75
    assert on_slot(words, slots, heard, 0.3, onsets=[1.6]) == 0.0  # "we" is 0.6 s off, and "walked" was misheard
    assert on_slot(["a", "a"], [1.0, 1.25], [("a", 0.0), ("a", 0.0)], 0.3, onsets=[1.1]) == 0.5
