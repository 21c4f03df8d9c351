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
    wer, heard = Recognizer().wer([text], [audio], 22050)
    assert wer <= 0.25, heard


def test_wer_command_needs_one_text_per_file(capsys):
    from specgen_apps.cli import main

    assert main(["wer", "--audio", "a.wav", "b.wav", "--text", "one text"]) == 2
    assert "give one --text per file" in capsys.readouterr().err
