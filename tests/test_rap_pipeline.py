"""RapPipeline end to end on tiny random parts: speculative greedy equals ar greedy on the token stage, vocals
last as long as the beat and mix without clipping, and unusable input gets clear errors."""
import numpy as np
import pytest
from transformers import AutoModelForCausalLM

from modalities.audio.features import save_audio
from modalities.rap.beats import beat
from modalities.rap.pipeline import RapPipeline
from modalities.rap.vocab import RapVocab
from tiny import random_heads, tiny_speech_parts, tone

LYRICS = "we walk the road today\nand sing the night away"


@pytest.fixture(scope="module")
def rap_dir(tmp_path_factory):
    root = tiny_speech_parts(tmp_path_factory.mktemp("rap"), RapVocab, LYRICS.splitlines(), context=1024)
    save_audio(str(root / "beat.wav"), beat(96, 3, seed=2)[0], 16000)
    return root


@pytest.fixture(scope="module")
def rap(rap_dir):
    return RapPipeline.from_pretrained(str(rap_dir))


def test_speculative_greedy_equals_ar_and_vocals_fill_the_beat(rap, rap_dir):
    beat_path = str(rap_dir / "beat.wav")
    ar = rap.generate(LYRICS, beat_path, method="ar", temperature=0.0)
    spec = rap.generate(LYRICS, beat_path, method="heads", temperature=0.0)
    assert spec.tokens == ar.tokens
    beat_len = len(beat(96, 3, seed=2)[0])
    assert len(spec.vocals) == len(spec.mix) == beat_len
    assert np.abs(spec.mix).max() <= 0.98 + 1e-6 and abs(spec.bpm - 96) <= 1


def test_unusable_input_is_refused(rap, rap_dir, tmp_path):
    beat_path = str(rap_dir / "beat.wav")
    with pytest.raises(ValueError, match="room for 2"):
        rap.generate(LYRICS + "\nline three\nline four", beat_path)
    save_audio(str(tmp_path / "silent.wav"), np.zeros(16000 * 3, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="silent"):
        rap.generate(LYRICS, str(tmp_path / "silent.wav"))
    with pytest.raises(ValueError, match="does not exist"):
        rap.generate(LYRICS, beat_path, voice_prompt=str(tmp_path / "missing.wav"))
    with pytest.raises(ValueError, match="lyrics are empty"):
        rap.generate("  \n ", beat_path)
    with pytest.raises(ValueError, match="integer >= 1"):
        rap.generate(LYRICS, beat_path, tolerance=0)
    with pytest.raises(ValueError, match="ships no neural vocoder"):
        rap.generate(LYRICS, beat_path, vocoder="neural")


def test_a_tolerance_decodes_the_heads_with_tolerance_acceptance(rap, rap_dir):
    beat_path = str(rap_dir / "beat.wav")
    greedy = rap.generate(LYRICS, beat_path, method="ar", temperature=0.0)
    k1 = rap.generate(LYRICS, beat_path, tolerance=1, temperature=0.0)
    assert k1.tokens == greedy.tokens and k1.stats.acceptance == "tolerance" and not k1.stats.lossless
    ar = rap.generate(LYRICS, beat_path, method="ar", tolerance=3, temperature=0.0)
    assert ar.stats.acceptance != "tolerance" and ar.stats.lossless


def test_cli_rap_writes_the_mix_and_the_vocals(rap_dir, tmp_path, capsys):
    import json

    from specgen_apps.cli import main

    (tmp_path / "lyrics.txt").write_text(LYRICS)
    out = tmp_path / "song.wav"
    assert main(["rap", "--model", str(rap_dir), "--lyrics-file", str(tmp_path / "lyrics.txt"), "--beat",
                 str(rap_dir / "beat.wav"), "--out", str(out), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert out.is_file() and (tmp_path / "song.vocals.wav").is_file() and abs(rec["bpm"] - 96) <= 1
    assert main(["rap", "--model", str(rap_dir), "--lyrics-file", str(tmp_path / "lyrics.txt"), "--beat",
                 str(rap_dir / "beat.wav"), "--draws", "top", "--out", str(tmp_path / "top.wav"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["lossless"]
    assert main(["rap", "--model", str(rap_dir), "--lyrics-file", str(tmp_path / "none.txt"), "--beat",
                 str(rap_dir / "beat.wav"), "--out", str(tmp_path / "x.wav")]) == 2
    assert "cannot read --lyrics-file" in capsys.readouterr().err


def test_bench_rap_reports_alignment_for_reference_and_methods(rap_dir, tmp_path):
    import json

    from specgen_apps.cli import main

    data = tmp_path / "data"
    data.mkdir()
    drums, beats = beat(96, 3, seed=2)
    rows = []
    for i in range(2):
        save_audio(str(data / f"b{i}.wav"), drums, 16000)
        save_audio(str(data / f"v{i}.wav"), tone(7.8, 150 + 20 * i), 16000)
        slots = [(8 * (1 + li) + 2 * j) * 30 / 96 for li, ln in enumerate(LYRICS.splitlines()) for j in
                 range(len(ln.split()))]  # word j of line li on eighth note 2j of bar li + 1
        rows.append({"id": f"s{i}", "lyrics": LYRICS.splitlines(), "voice": "v", "beat": str(data / f"b{i}.wav"),
                     "vocals": str(data / f"v{i}.wav"), "beat_times": beats.tolist(), "onsets": slots, "bpm": 96})
    (data / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    hydra = tmp_path / "hydra"  # a second head set on the same LM: compared in the same run
    random_heads(AutoModelForCausalLM.from_pretrained(rap_dir / "lm"), "hydra").save(str(hydra))
    assert main(["bench", "rap", "--model", str(rap_dir), "--data", str(data), "--songs", "1", "--heads", str(hydra),
                 "--tolerances", "3", "--tree-sizes", "3", "--fp32-drafting", "--out", str(out)]) == 0
    result = json.loads((out / "rap.json").read_text())["rows"]
    per_heads = ["", ", top-k guesses", " k=3", ", tree 3", ", fp32 drafting"]
    assert [r["method"] for r in result] == ["reference vocals", "reference tokens, resynthesized", "ar",
                                             *[f"heads ({kind}){row}" for kind in ("medusa", "hydra")
                                               for row in per_heads]]
    assert [r.get("lossless") for r in result] == [None, None, "yes", *["yes", "yes", "no", "yes", "yes"] * 2]
    assert result[1]["mcd"] > 0  # the reference's own tokens, decoded: not the reference itself
    assert result[0]["onsets"] == 1  # the reference tone starts once (word_onsets: the stem's energy)
    assert all(0 <= r["alignment"] <= 1 for r in result) and (out / "rap-0-heads-hydra.wav").is_file()
    assert all(r["wer"] >= 0 and 0 <= r["on_slot"] <= 1 for r in result)  # Whisper's judgement, the reference's too


def test_parts_can_be_shared_with_another_model_folder(rap_dir, tmp_path):
    import json
    import shutil

    model, speech = tmp_path / "models" / "rap", tmp_path / "models" / "speech"
    shutil.copytree(rap_dir, model)
    speech.mkdir()
    for part in ("tokenizer", "flow"):
        shutil.move(str(model / part), str(speech / part))
    with pytest.raises(ValueError, match="has no tokenizer/ part"):
        RapPipeline.from_pretrained(str(model))
    (model / "shared.json").write_text(json.dumps({"tokenizer": "../speech/tokenizer", "flow": "../speech/flow"}))
    shared = RapPipeline.from_pretrained(str(model))
    own = RapPipeline.from_pretrained(str(rap_dir))
    beat_path = str(rap_dir / "beat.wav")
    kw = dict(method="ar", temperature=0.0)
    assert np.array_equal(shared.generate(LYRICS, beat_path, **kw).mix, own.generate(LYRICS, beat_path, **kw).mix)
    (model / "shared.json").write_text(json.dumps({"tokenizer": "../speech/tokenizer", "flow": "../speech/flow",
                                                   "vocoder": "../speech/vocoder"}))
    assert RapPipeline.from_pretrained(str(model)).vocoder is None  # an optional part that is not there
    shutil.rmtree(speech / "flow")
    with pytest.raises(ValueError, match="keep the model folders side by side"):
        RapPipeline.from_pretrained(str(model))
    for bad in ("{not json", "[1, 2]", '{"flow": 3}'):
        (model / "shared.json").write_text(bad)
        with pytest.raises(ValueError, match="shared.json"):
            RapPipeline.from_pretrained(str(model))


def test_aligned_stream_puts_each_words_phonemes_on_its_slot(rap_dir, tmp_path):
    """An aligned rap vocabulary: the training stream (`interleave`) is one the decode's constraint (`order`)
    allows token by token, and the pipeline decodes with the words forced onto their slots, ar and heads alike."""
    import json
    import shutil

    import torch

    from modalities.rap.vocab import word_slots

    assert word_slots(["a b", "c d e f"]) == [8, 12, 16, 18, 20, 22]
    folder = tmp_path / "aligned"
    shutil.copytree(rap_dir, folder)
    vocab_file = folder / "lm" / "rap_vocab.json"
    spec = json.loads(vocab_file.read_text())
    vocab_file.write_text(json.dumps({**spec, "aligned": True}))
    vocab = RapVocab.load(str(folder / "lm"))
    assert vocab.aligned and bool(vocab.allowed[vocab.encode_phonemes("w")[0]])
    words = vocab.word_ids(LYRICS.splitlines())
    assert len(words) == len(LYRICS.split()) and all(words)
    frames = [3 * k for k in range(len(words))]
    speech = vocab.speech_ids([k % vocab.speech_size for k in range(40)])
    stream = vocab.interleave(speech, words, frames)
    assert vocab.speech_ids(vocab.speech_tokens(stream)) == speech and len(stream) == 40 + sum(map(len, words))
    order = vocab.order(words, frames)
    for i, t in enumerate(stream):
        assert not bool(order.block([0], [stream[:i]])[0, 0, t]), f"the decode would bar token {i} of the stream"

    rap = RapPipeline.from_pretrained(str(folder))
    beat_path = str(folder / "beat.wav")
    ar = rap.generate(LYRICS, beat_path, method="ar", temperature=0.0)
    heads = rap.generate(LYRICS, beat_path, method="heads", temperature=0.0)
    assert heads.tokens == ar.tokens
    frames_in_beat = len(rap.tokenizer.encode(torch.from_numpy(beat(96, 3, seed=2)[0])))
    assert len(ar.tokens) == frames_in_beat  # the words' phonemes came on top of the vocal frames
    assert ar.stats.new_tokens == frames_in_beat + sum(map(len, words))
