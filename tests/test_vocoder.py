"""The neural vocoder: Griffin-Lim's output length for any mel, a disk round trip that changes nothing, training
that learns, clear errors for a missing or mismatched vocoder; and the log-spectral distance it is judged by."""
import numpy as np
import pytest
import torch

from modalities.audio.features import MelConfig, griffin_lim, log_mel
from modalities.audio.metrics import log_spectral_distance
from modalities.audio.vocoder import MelVocoder, choose_vocoder, load_vocoder
from tiny import tiny_vocoder, tone


def test_vocoder_output_has_griffin_lims_length_and_survives_a_disk_round_trip(tmp_path):
    v = tiny_vocoder()
    mel = log_mel(torch.from_numpy(tone(1.0, 180)))
    for frames in (51, 4, 2, 1):
        assert v.vocode(mel[:frames]).shape == griffin_lim(mel[:frames]).shape
    mel = log_mel(torch.from_numpy(tone(0.5, 200)))
    v.save(str(tmp_path / "fp32"))
    assert torch.equal(MelVocoder.load(str(tmp_path / "fp32")).vocode(mel), v.vocode(mel))
    v.save(str(tmp_path / "bf16"), dtype=torch.bfloat16)  # the zoo's storage: loads back as float32
    again = MelVocoder.load(str(tmp_path / "bf16"))
    assert next(again.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="no mel frames"):
        v.vocode(mel[:0])


def test_vocoder_training_lowers_its_loss():
    torch.manual_seed(0)
    v = tiny_vocoder()
    audio = torch.from_numpy(np.stack([tone(0.4, f) for f in (150, 220)]))
    opt = torch.optim.Adam(v.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = v.loss(audio, MelConfig())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_missing_or_mismatched_vocoders_get_clear_errors(tmp_path):
    assert load_vocoder(str(tmp_path), MelConfig()) is None  # no vocoder/ folder: Griffin-Lim
    MelVocoder({"dim": 8, "hidden": 8, "layers": 1, "hop": 256}).save(str(tmp_path / "vocoder"))
    with pytest.raises(ValueError, match="retrain the vocoder"):
        load_vocoder(str(tmp_path), MelConfig())
    MelVocoder({"dim": 8, "hidden": 8, "layers": 1, "fmin": 0.0, "fmax": 4000.0}).save(str(tmp_path / "vocoder"))
    with pytest.raises(ValueError, match="retrain the vocoder"):  # other mel bands, same frame rate
        load_vocoder(str(tmp_path), MelConfig())
    with pytest.raises(ValueError, match="ships no neural vocoder"):
        choose_vocoder("neural", None)
    with pytest.raises(ValueError, match="choose one of"):
        choose_vocoder("wavenet", None)
    v = tiny_vocoder()
    assert choose_vocoder("auto", v) is v and choose_vocoder("griffin-lim", v) is None
    assert choose_vocoder("auto", None) is None


def test_log_spectral_distance_is_zero_for_a_copy_and_grows_with_noise():
    a = tone(1.0, 180)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(a)).astype(np.float32)
    assert log_spectral_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    small, large = log_spectral_distance(a + 0.001 * noise, a), log_spectral_distance(a + 0.05 * noise, a)
    assert 0 < small < large
    with pytest.raises(ValueError, match="at least 2048"):
        log_spectral_distance(a[:1000], a[:1000])


def test_flow_and_vocoder_training_steps_write_their_parts_and_resume(tmp_path):
    import json

    from modalities.audio.features import save_audio
    from modalities.speech.train import main

    data, out = tmp_path / "data", tmp_path / "model"
    (data / "clips").mkdir(parents=True)
    rows = []
    for i, f0 in enumerate((140, 200, 260)):
        save_audio(str(data / "clips" / f"c{i}.wav"), tone(3.5, f0), 16000)
        rows.append({"id": f"c{i}", "voice": "v", "path": str(data / "clips" / f"c{i}.wav")})
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--data", str(data), "--out", str(out), "--batch", "2"]
    main(["tokenizer", *common, "--size", "8", "--clips", "3"])
    for step, frames in (("flow", "40"), ("vocoder", "8")):
        main([step, *common, "--steps", "2", "--max-frames", frames])
        assert torch.load(out / f"{step}.run.pt")["state"]["step"] == 2
    with pytest.raises(SystemExit, match="smaller --max-frames"):
        main(["vocoder", *common, "--steps", "3", "--max-frames", "400"])
    mel = log_mel(torch.from_numpy(tone(0.5)))  # 26 frames: (26 - 1) * 320 samples
    assert MelVocoder.load(str(out / "vocoder")).vocode(mel).shape == (8000,)


def test_training_resumes_from_its_checkpoint_instead_of_starting_over(tmp_path):
    from modalities.speech.train import train_resumable

    model = torch.nn.Linear(3, 1)
    seen = []

    def loss_at(step):
        seen.append(step)
        return model(torch.ones(2, 3)).pow(2).mean()

    train_resumable(model, "toy", str(tmp_path), 2, 1e-2, 10.0, loss_at)
    weights = model.weight.detach().clone()
    model = torch.nn.Linear(3, 1)  # a fresh model: the second run must load the first run's weights
    state = train_resumable(model, "toy", str(tmp_path), 3, 1e-2, 10.0, loss_at)
    assert seen == [0, 1, 2] and state["step"] == 3
    assert not torch.equal(model.weight, weights)  # trained one more step from the saved weights
    model = torch.nn.Linear(3, 1)
    train_resumable(model, "toy", str(tmp_path), 3, 1e-2, 10.0, loss_at)  # already done: loads, takes no step
    assert seen == [0, 1, 2]
