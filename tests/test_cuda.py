"""The CUDA path, run where a GPU is present (skipped elsewhere; CI has none). In fp32 on the GPU every method's
greedy decode equals `ar` token for token, for the core loop and for the image, rap and speech pipelines; lossless
sampling and the pipelines' default dtype (bf16) run there; head drafters draft in the heads' own dtype with the
GPU's wide default tree; a training step runs on the GPU."""
import numpy as np
import pytest
import torch

from specgen import CachedLM, DraftConfig, Sampling, generate, make_drafter
from test_speculative_greedy import HEAD_KINDS, PROMPTS, run
from tiny import perturbed, random_heads, tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def models():
    target = tiny_model("llama", layers=3)
    draft = perturbed(target, 0.3, pard_token=2)
    heads = {kind: random_heads(target, kind) for kind in HEAD_KINDS}  # made on the CPU, then moved with the target
    target.cuda()
    return target, {"pard": draft.cuda(), "draft_model": draft, **{k: h.cuda() for k, h in heads.items()}}


@pytest.mark.parametrize("method", ["pard", "draft_model", "ngram", *HEAD_KINDS])
def test_greedy_on_the_gpu_equals_ar(models, method):
    target, drafts = models
    kw = dict(max_new_tokens=23, num_draft_tokens=4)
    ref = [run(target, [p], "ar", drafts, **kw)[0].token_ids for p in PROMPTS]
    assert [r.token_ids for r in run(target, PROMPTS, method, drafts, **kw)] == ref
    assert [run(target, [p], method, drafts, **kw)[0].token_ids for p in PROMPTS] == ref


@pytest.mark.parametrize("method", ["draft_model", "medusa", "hydra", "hawk"])
def test_lossless_sampling_runs_on_the_gpu_and_repeats_with_its_seed(models, method):
    target, drafts = models
    def sample():
        return run(target, PROMPTS, method, drafts, max_new_tokens=20, num_draft_tokens=4,
                   sampling=Sampling(temperature=1.0), generator=torch.Generator("cuda").manual_seed(3))

    first = sample()
    assert [r.token_ids for r in first] == [r.token_ids for r in sample()]
    assert all(len(r.token_ids) == 20 and max(r.token_ids) < 97 and r.stats.lossless for r in first)


def test_drawn_hawk_with_a_vertical_run_on_the_gpu():
    """Drawn Hawk whose vertical guesses continue the drawn chain (`HawkDrafter.extend_drawn`): the ring of
    distributions lives on the GPU, the run is drafted, and the decode repeats with its seed."""
    target = tiny_model("llama", layers=3)
    heads = random_heads(target, "hawk:hydra", scale=2.0)
    heads.config["width"] = 4
    heads.config["rule_accuracy"] = {"drawn": [[0.5, 0.01]] * heads.num_heads + [[0.95, 0.0]] * 2}
    target.cuda()
    heads.cuda()

    def sample():
        drafter = make_drafter("hawk", heads, DraftConfig(tree_size=4))
        out = generate(CachedLM(target), PROMPTS, drafter, Sampling(temperature=1.0), max_new_tokens=24,
                       num_draft_tokens=8, generator=torch.Generator("cuda").manual_seed(5))
        assert drafter.extension == 3 and drafter.ring.device.type == "cuda"
        return [r.token_ids for r in out]

    first = sample()
    assert first == sample() and all(len(t) == 24 for t in first)


def test_heads_draft_in_their_own_dtype_with_the_wide_gpu_tree(models):
    _, drafts = models
    drafter = make_drafter("hydra", drafts["hydra"])
    assert drafter.heads is drafts["hydra"] and drafter.dtype == torch.float32  # no half-precision copy on a GPU
    assert len(drafter.paths) == 32


def test_bf16_target_and_heads_decode_on_the_gpu():
    target = tiny_model("llama", layers=3)
    heads = random_heads(target, "hydra")
    target.to("cuda", torch.bfloat16)
    heads.to("cuda", torch.bfloat16)
    out = generate(CachedLM(target), PROMPTS, make_drafter("hydra", heads), max_new_tokens=16)
    assert all(len(r.token_ids) == 16 for r in out)


def test_a_head_training_step_runs_on_the_gpu():
    target = tiny_model("llama", layers=3).cuda()
    heads = random_heads(target, "hydra").cuda().train()
    ids = torch.randint(3, 97, (4, 32), device="cuda")
    with torch.no_grad():
        hidden = target(ids, output_hidden_states=True).hidden_states[-1]
    logits = heads.train_logits(hidden, ids)  # [batch, L, heads, vocab]: entry (t, i) guesses token t+2+i
    loss = sum(torch.nn.functional.cross_entropy(logits[:, :-(i + 2), i].flatten(0, 1), ids[:, i + 2:].flatten())
               for i in range(logits.shape[2]))
    loss.backward()
    assert all(p.grad is not None and p.grad.is_cuda for p in heads.parameters() if p.requires_grad)


def test_image_pipeline_on_the_gpu(tmp_path):
    from modalities.image.pipeline import ImagePipeline
    from tiny import tiny_image_parts

    root = tiny_image_parts(tmp_path)
    gen = ImagePipeline.from_pretrained(str(root), device="cuda", dtype="float32")
    kw = dict(cfg_scale=3.0, temperature=0.0)
    ar = gen.generate("a red circle left of a blue square", method="ar", **kw)
    hawk = gen.generate("a red circle left of a blue square", method="hawk", **kw)
    assert hawk.tokens == ar.tokens
    default = ImagePipeline.from_pretrained(str(root))  # CUDA in bf16
    assert default.lm.device.type == "cuda" and default.lm.dtype == torch.bfloat16
    res = default.generate("a small red square", temperature=1.0, samples=2, seed=1)
    assert res.image.size[0] > 0 and res.stats.lossless


def test_rap_pipeline_on_the_gpu(tmp_path):
    from modalities.audio.features import save_audio
    from modalities.rap.beats import beat
    from modalities.rap.pipeline import RapPipeline
    from modalities.rap.vocab import RapVocab
    from tiny import tiny_speech_parts

    lyrics = "we walk the road today\nand sing the night away"
    root = tiny_speech_parts(tmp_path, RapVocab, lyrics.splitlines(), context=1024)
    save_audio(str(root / "beat.wav"), beat(96, 3, seed=2)[0], 16000)
    rap = RapPipeline.from_pretrained(str(root), device="cuda", dtype="float32")
    ar = rap.generate(lyrics, str(root / "beat.wav"), method="ar", temperature=0.0)
    spec = rap.generate(lyrics, str(root / "beat.wav"), method="heads", temperature=0.0)
    assert spec.tokens == ar.tokens and len(spec.mix) == len(beat(96, 3, seed=2)[0])
    res = RapPipeline.from_pretrained(str(root)).generate(lyrics, str(root / "beat.wav"), seed=1)
    assert np.isfinite(res.mix).all() and np.abs(res.mix).max() <= 0.98 + 1e-6


def test_speech_pipeline_on_the_gpu(tmp_path):
    from modalities.speech.pipeline import SpeechPipeline
    from modalities.speech.vocab import SpeechVocab
    from tiny import tiny_speech_parts

    root = tiny_speech_parts(tmp_path, SpeechVocab, ["Hello there.", "The quick brown fox jumps."], vocoder=True)
    tts = SpeechPipeline.from_pretrained(str(root), device="cuda", dtype="float32")
    kw = dict(temperature=0.0, max_seconds=0.6, seed=0)
    ar = tts.generate("Hello there.", method="ar", **kw)
    assert tts.generate("Hello there.", method="vadusa", tolerance=1, **kw).tokens == ar.tokens
    res = SpeechPipeline.from_pretrained(str(root)).generate("Hello there.", acceptance="sample", max_seconds=0.6)
    assert np.isfinite(res.audio).all() and len(res.audio) > 0
