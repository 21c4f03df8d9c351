"""SpeechPipeline end to end on tiny random parts: VADUSA at tolerance 1 equals ar, audio comes out, and unusable
input gets clear errors."""
import numpy as np
import pytest
from transformers import AutoModelForCausalLM

from modalities.audio.features import save_audio
from modalities.speech.pipeline import SpeechPipeline
from modalities.speech.vocab import SpeechVocab
from tiny import random_heads, tiny_speech_parts
from tiny import tone as tiny_tone


def tone(seconds, sr, f0=180.0):
    return tiny_tone(seconds, f0, sr)


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory):
    return tiny_speech_parts(tmp_path_factory.mktemp("speech"), SpeechVocab,
                             ["Hello there.", "The quick brown fox jumps."], vocoder=True)


@pytest.fixture(scope="module")
def tts(speech_dir):
    return SpeechPipeline.from_pretrained(str(speech_dir))


def test_vadusa_at_tolerance_one_equals_ar_greedy(tts):
    kw = dict(temperature=0.0, max_seconds=0.6, seed=0)
    ar = tts.generate("Hello there.", method="ar", **kw)
    spec = tts.generate("Hello there.", method="vadusa", tolerance=1, **kw)
    assert spec.tokens == ar.tokens and spec.stats.lossless is False  # the tolerance rule, exact at k=1
    assert np.array_equal(spec.audio, ar.audio)


def test_synthesis_gives_audio_of_the_token_length_with_energy(tts, tmp_path):
    res = tts.generate("The quick brown fox.", method="vadusa", tolerance=3, max_seconds=0.8, seed=1)
    frames = len(res.tokens)
    assert 1 <= frames <= 40
    assert abs(len(res.audio) - (frames - 1) * 320) <= 320
    assert res.sample_rate == 16000 and np.sqrt(np.mean(res.audio ** 2)) > 1e-3
    assert np.abs(res.audio).max() <= 1.0
    res.save(str(tmp_path / "out.wav"))
    assert (tmp_path / "out.wav").stat().st_size > 44


def test_the_shipped_neural_vocoder_is_the_default_and_griffin_lim_stays_available(tts):
    kw = dict(method="ar", temperature=0.0, max_seconds=0.6, seed=0)
    neural, auto, gl = (tts.generate("Hello there.", vocoder=v, **kw) for v in ("neural", "auto", "griffin-lim"))
    assert neural.tokens == gl.tokens and np.array_equal(neural.audio, auto.audio)
    assert len(neural.audio) == len(gl.audio) and not np.allclose(neural.audio, gl.audio)
    with pytest.raises(ValueError, match="choose one of"):
        tts.generate("Hello there.", vocoder="hifigan", **kw)


def test_unusable_input_gets_clear_errors(tts, tmp_path):
    with pytest.raises(ValueError, match="text is empty"):
        tts.generate("   ")
    with pytest.raises(ValueError, match="does not exist"):
        tts.generate("Hello.", voice_prompt=str(tmp_path / "missing.wav"))
    save_audio(str(tmp_path / "short.wav"), tone(0.4, 16000), 16000)
    with pytest.raises(ValueError, match="at least 1 s"):
        tts.generate("Hello.", voice_prompt=str(tmp_path / "short.wav"))
    save_audio(str(tmp_path / "silent.wav"), np.zeros(32000, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="silent"):
        tts.generate("Hello.", voice_prompt=str(tmp_path / "silent.wav"))
    with pytest.raises(ValueError, match="split it into sentences"):
        tts.generate("The quick brown fox jumps over the lazy dog. " * 12)


def test_speech_length_is_capped_by_the_context_not_refused(tts):
    res = tts.generate("Hello there.", method="ar", temperature=1.0, max_seconds=60.0, top_k=1)
    assert 1 <= len(res.tokens) <= tts.lm.context  # 60 s would be 3000 tokens; the context holds 512


def test_cli_speech_writes_a_wav_and_refuses_bad_input(speech_dir, tmp_path, capsys):
    import json

    from specgen_apps.cli import main

    out = tmp_path / "say.wav"
    assert main(["speech", "--model", str(speech_dir), "--text", "Hello there.", "--max-seconds", "0.5",
                 "--out", str(out), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert out.is_file() and rec["seconds"] > 0 and "mean_accepted" in rec["stats"]
    assert main(["speech", "--model", str(speech_dir), "--text", "", "--out", str(tmp_path / "x.wav")]) == 2
    assert "text is empty" in capsys.readouterr().err and not (tmp_path / "x.wav").exists()


def test_bench_speech_runs_and_reports_quality(speech_dir, tmp_path):
    import json

    from specgen_apps.cli import main

    data = tmp_path / "data"
    (data / "clips").mkdir(parents=True)
    rows = []
    for i, f0 in enumerate((150, 170, 220)):
        path = data / "clips" / f"h{i}.wav"
        save_audio(str(path), tone(1.5, 16000, f0), 16000)
        rows.append({"id": f"h{i}", "text": "Hello there.", "voice": "v0" if i < 2 else "v1", "path": str(path)})
    (data / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    hydra = tmp_path / "hydra"  # a second head set on the same LM: compared in the same run
    random_heads(AutoModelForCausalLM.from_pretrained(speech_dir / "lm"), "hydra").save(str(hydra))
    assert main(["bench", "speech", "--model", str(speech_dir), "--data", str(data), "--sentences", "2",
                 "--tolerances", "1", "3", "--max-seconds", "0.4", "--heads", str(hydra), "--pytorch-drafting",
                 "--out", str(out)]) == 0
    result = json.loads((out / "speech.json").read_text())["rows"]
    hydra_rows = ["vadusa k=1 (hydra)", "vadusa k=3 (hydra)", "heads, exact, drawn guesses (hydra)",
                  "heads, exact, top-k guesses (hydra)"]
    assert [r["method"] for r in result] == ["ar", "ar, Griffin-Lim", "vadusa k=1 (medusa)", "vadusa k=3 (medusa)",
                                             "vadusa k=1 (hydra)", "vadusa k=3 (hydra)",
                                             "heads, exact, drawn guesses (medusa)",
                                             "heads, exact, top-k guesses (medusa)",
                                             "heads, exact, drawn guesses (hydra)",
                                             "heads, exact, top-k guesses (hydra)",
                                             *(f"{m}, PyTorch rounds" for m in hydra_rows), "reference recording",
                                             "reference tokens, resynthesized", "reference mel, Griffin-Lim",
                                             "reference mel, neural vocoder"]
    assert all(r["lsd"] > 0 for r in result[-2:])
    assert (out / "speech-vadusa-k-3-hydra.wav").is_file()
    assert all(r["mcd"] > 0 for r in result if r["method"] != "reference recording")
    assert all(-1 <= r["speaker_sim"] <= 1 for r in result if "lsd" not in r)
    assert all(r["wer"] >= 0 for r in result)  # Whisper's judgement of every row, the references' included
    assert all(r["e2e"] > 0 for r in result if "rtf" in r)
    assert "speedup" not in result[-1]  # the ceiling rows measure quality only
    assert (out / "speech-ar.wav").is_file() and (out / "speech.png").is_file()


def test_batch_speech_writes_wavs(speech_dir, tmp_path):
    import json

    from specgen_apps.cli import main

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "hi", "text": "Hello there.", "max_seconds": 0.4}) + "\n"
                    + json.dumps({"id": "none", "text": ""}) + "\n")
    assert main(["batch", "speech", "--model", str(speech_dir), "--input", str(jobs), "--out",
                 str(tmp_path / "out")]) == 0
    recs = {r["id"]: r for r in map(json.loads, (tmp_path / "out/results.jsonl").read_text().splitlines())}
    assert recs["hi"]["status"] == "ok" and (tmp_path / "out/hi.wav").stat().st_size > 44
    assert recs["none"]["status"] == "error"


def test_copy_synthesis_stages_keep_the_clip_length(tts):
    """modalities.speech.ceiling: every stage of the audio half gives audio as long as the clip (one hop either
    way), and a tokenizer fitted on the side adds its centroid row."""
    import torch

    from modalities.audio.features import log_mel
    from modalities.audio.tokenizer import SpeechTokenizer
    from modalities.speech.ceiling import stages

    clip = tone(1.0, 16000, 150.0)
    prompt_mel = log_mel(torch.from_numpy(tone(1.0, 16000, 200.0)))
    side = SpeechTokenizer.fit([log_mel(torch.from_numpy(tone(1.0, 16000, f))) for f in (140, 160)], size=8, iters=3)
    out = stages(tts, clip, prompt_mel, [2], 0, [side])
    assert list(out) == ["recording", "mel, neural vocoder", "mel, Griffin-Lim", "token centroids, neural vocoder",
                         "token centroids, K=8 fitted on the voice", "tokens, flow 2 steps, vocoder"]
    for name, wave in out.items():
        assert abs(len(wave) - len(clip)) <= 320, name


def test_copy_synthesis_needs_enough_sentences(tmp_path):
    from modalities.speech.ceiling import recordings

    (tmp_path / "train.jsonl").write_text('{"text": "Too few words.", "domain": "prose"}\n')
    with pytest.raises(ValueError, match="build the corpus first"):
        recordings(str(tmp_path), 3, 0)
