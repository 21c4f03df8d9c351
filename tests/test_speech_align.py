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


PROSE = ["The old man walked slowly down the quiet road.", "She found a small blue box under the table.",
         "We will meet again at the end of the week.", "A cold wind blew across the empty field today."]


def test_aligned_data_sequences_and_pipeline(tmp_path):
    """Piper clips with their alignment, interleaved sequences whose frames are exactly the clip's tokens and whose
    symbols are the clip's in order, and a pipeline on an aligned vocabulary whose exact heads equal ar."""
    pytest.importorskip("onnx")
    pytest.importorskip("piper")
    import json

    import torch

    from modalities.audio.features import log_mel, load_audio, save_audio
    from modalities.audio.flow import FlowDecoder
    from modalities.audio.tokenizer import SpeechTokenizer
    from modalities.specials import BOS, EOS, SEP
    from modalities.speech.data import build
    from modalities.speech.pipeline import SpeechPipeline
    from modalities.speech.train import build_sequences, train_mel_decoder
    from modalities.speech.vocab import SpeechVocab
    from tiny import random_heads, tiny_model

    corpus, data, model = tmp_path / "corpus", tmp_path / "data", tmp_path / "model"
    corpus.mkdir()
    for split, texts in (("train", PROSE[:3]), ("heldout", PROSE[3:])):
        (corpus / f"{split}.jsonl").write_text(json.dumps({"text": " ".join(texts), "domain": "prose"}) + "\n")
    build(str(corpus), str(data), 3, 1, aligned=True)
    clips = [json.loads(ln) for ln in open(data / "train.jsonl")]
    assert len(clips) == 3 and all(len(c["symbols"]) == len(c["durations"]) for c in clips)
    assert {c["voice"] for c in clips} == {"piper-joe@0.85", "piper-joe@1.0", "piper-joe@1.2"}
    mels = [log_mel(torch.from_numpy(load_audio(c["path"], 16000))) for c in clips]
    tok = SpeechTokenizer.fit(mels, size=16, iters=3)
    tok.save(str(model / "tokenizer"))
    build_sequences(str(data), str(model), 0, aligned=True, prompt_seconds=0)
    vocab = SpeechVocab.load(str(model / "lm"))
    assert vocab.aligned and vocab.prompt_frames == 0
    for c, mel, seq in zip(clips, mels, torch.load(data / "train.pt")):
        ids = seq["ids"]
        n = len(c["symbols"])
        assert ids[: n + 3] == [BOS, *vocab.encode_phonemes(c["symbols"]), SEP, SEP] and seq["loss_from"] == n + 3
        body = ids[n + 3 : -1]
        assert ids[-1] == EOS and vocab.speech_tokens(body) == tok.encode_mel(mel).tolist()
        assert [i for i in body if vocab.is_symbol(i)] == vocab.encode_phonemes(c["symbols"])
    lm = tiny_model("llama", vocab=len(vocab), context=512, layers=2)
    lm.save_pretrained(model / "lm")
    random_heads(lm, "medusa").save(str(model / "heads"))
    torch.manual_seed(0)
    FlowDecoder({"vocab": 16, "dim": 32, "layers": 1, "heads": 2}).save(str(model / "flow"))
    save_audio(str(model / "prompt.wav"), load_audio(clips[0]["path"], 16000), 16000)
    tts = SpeechPipeline.from_pretrained(str(model))
    kw = dict(temperature=0.0, max_seconds=0.5, seed=0)
    ar = tts.generate("Meet me at the end.", method="ar", **kw)
    spec = tts.generate("Meet me at the end.", method="vadusa", tolerance=1, **kw)
    assert spec.tokens == ar.tokens and len(ar.audio) > 0
    assert all(0 <= t < 16 for t in ar.tokens)  # the symbols it said are not speech
    # without flow/ (and no prompt.wav): a one-voice model decodes its tokens' centroids and needs no voice prompt
    import shutil

    shutil.rmtree(model / "flow")
    (model / "prompt.wav").unlink()
    tts = SpeechPipeline.from_pretrained(str(model))
    assert tts.flow is None
    ar = tts.generate("Meet me at the end.", method="ar", **kw)
    spec = tts.generate("Meet me at the end.", method="vadusa", tolerance=1, **kw)
    assert spec.tokens == ar.tokens and len(ar.audio) >= (len(ar.tokens) - 1) * tok.cfg.hop
    with pytest.raises(ValueError, match="no flow decoder"):
        tts.generate("Meet me at the end.", method="ar", decoder="flow", **kw)
    with pytest.raises(ValueError, match="no token-to-mel decoder"):
        tts.generate("Meet me at the end.", method="ar", decoder="net", **kw)
    # a learned token-to-mel decoder, trained on the clips: auto then takes it over the centroids
    train_mel_decoder(str(data), str(model), steps=3, batch=2, max_frames=32, seed=0, lr=1e-3, max_minutes=1)
    tts = SpeechPipeline.from_pretrained(str(model))
    assert tts.mel_decoder is not None and tts.mel_decoder.config["vocab"] == 16
    net = tts.generate("Meet me at the end.", method="ar", **kw)
    cen = tts.generate("Meet me at the end.", method="ar", decoder="centroids", **kw)
    assert net.tokens == ar.tokens == cen.tokens and len(net.audio) == len(cen.audio)
    assert not np.allclose(net.audio, cen.audio)
