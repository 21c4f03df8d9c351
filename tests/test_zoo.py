"""The shipped checkpoints in models/zoo/: each loads, each speculative method on it reproduces `ar` greedy token
for token (fp32), and the media models make output of the right shape with energy."""
import glob
import os

import numpy as np
import pytest

ZOO = os.path.join(os.path.dirname(__file__), "..", "models", "zoo")
TEXT_PROMPTS = ["def read_config(path):\n    with open(path) as f:", "And the LORD said unto Moses, Go in"]
HEAD_SETS = sorted(os.path.relpath(os.path.dirname(p), ZOO)  # text-30m-heads/KIND, each with its heads.json
                   for p in glob.glob(os.path.join(ZOO, "text-30m-heads", "*", "heads.json")))


def zoo(name: str) -> str:
    path = os.path.join(ZOO, name)
    assert os.path.isdir(path), f"{path} is missing from this checkout: the zoo ships with the repository"
    return path


@pytest.fixture(scope="module")
def text_ar():
    from modalities.text import TextPipeline

    pipe = TextPipeline.from_pretrained(zoo("text-30m"), dtype="float32")
    return [o.token_ids for o in pipe.generate(TEXT_PROMPTS, max_new_tokens=20, temperature=0.0, method="ar")]


@pytest.mark.parametrize("draft", ["text-pard-5m", "text-draft-5m"] + HEAD_SETS)
def test_every_shipped_text_drafter_reproduces_ar_greedy(draft, text_ar):
    from modalities.text import TextPipeline

    pipe = TextPipeline.from_pretrained(zoo("text-30m"), draft=zoo(draft), dtype="float32")
    outs = pipe.generate(TEXT_PROMPTS, max_new_tokens=20, temperature=0.0)  # a batch of two unequal prompts
    assert [o.token_ids for o in outs] == text_ar
    assert sum(o.stats.mean_accepted for o in outs) > 2.0  # the drafts are trained: they get some tokens right


def test_all_five_head_kinds_ship():
    assert {os.path.basename(d) for d in HEAD_SETS} == {"medusa", "hydra", "koala", "koala-noadv", "redrafter"}


def test_shipped_speech_model_speaks_and_vadusa_at_tolerance_one_matches_ar():
    from modalities.speech import SpeechPipeline

    tts = SpeechPipeline.from_pretrained(zoo("speech-tts"), dtype="float32")
    assert tts.vocab.aligned and tts.flow is None and tts.vocab.temperature == 0.3  # one voice, centroids
    kw = dict(temperature=0.0, max_seconds=1.0, seed=0)
    ar = tts.generate("The quick brown fox.", method="ar", **kw)
    spec = tts.generate("The quick brown fox.", method="vadusa", tolerance=1, **kw)
    assert spec.tokens == ar.tokens and spec.stats.mean_accepted > 1.0
    res = tts.generate("The quick brown fox.", method="vadusa", tolerance=3, max_seconds=4.0, seed=0)
    seconds = len(res.audio) / res.sample_rate
    assert 0.4 <= seconds <= 3.0 and np.sqrt(np.mean(res.audio ** 2)) > 0.01  # a short sentence, not silence
    assert tts.vocoder is not None  # the shipped neural vocoder is the default


def test_shipped_image_model_hawk_matches_ar_with_guidance():
    from modalities.image import ImagePipeline

    gen = ImagePipeline.from_pretrained(zoo("image-scenes"), dtype="float32")
    kw = dict(cfg_scale=3.0, temperature=0.0)
    ar = gen.generate("a large red circle", method="ar", **kw)
    hawk = gen.generate("a large red circle", method="hawk", **kw)
    assert np.array_equal(np.asarray(hawk.image), np.asarray(ar.image)) and ar.image.size == (64, 64)
    assert hawk.stats.mean_accepted > 1.5


def test_shipped_rap_model_heads_match_ar_and_vocals_fill_the_beat(tmp_path):
    from modalities.audio.features import save_audio
    from modalities.rap import RapPipeline
    from modalities.rap.beats import SR, beat

    drums = beat(100, 3, seed=1)[0]
    save_audio(str(tmp_path / "beat.wav"), drums, SR)
    rap = RapPipeline.from_pretrained(zoo("rap"), dtype="float32")
    assert rap.vocoder is not None and rap.heads.config["num_heads"] == 6  # the speech model's vocoder, shared
    lyrics = "we walk the road today\nand sing the night away"
    ar = rap.generate(lyrics, str(tmp_path / "beat.wav"), method="ar", temperature=0.0)
    spec = rap.generate(lyrics, str(tmp_path / "beat.wav"), method="heads", temperature=0.0)
    assert spec.tokens == ar.tokens
    assert len(spec.vocals) == len(spec.mix) == len(drums) and np.abs(spec.mix).max() <= 0.98 + 1e-6


def test_the_demo_defaults_point_at_shipped_models():
    from specgen_apps.demo import MODELS, TEXT_DEFAULTS

    assert TEXT_DEFAULTS["model"] == "gemma-3-270m"  # the short name the text pipeline converts on first use
    for path in [TEXT_DEFAULTS["draft"], *TEXT_DEFAULTS["heads"], *MODELS.values()]:
        assert os.path.isdir(path), f"the demo's default {path} is not in the zoo"


def test_the_gemma_pard_draft_reproduces_gemma_greedy(gemma_path):
    """The default text pair: Gemma 3 270M (converted on first use) with its trimmed-vocabulary PARD draft, fp32."""
    from modalities.text import TextPipeline

    pipe = TextPipeline.from_pretrained(gemma_path, draft=zoo("text-gemma-pard"), dtype="float32")
    prompts = ["def fibonacci(n):", "The history of the printing press"]
    ar = pipe.generate(prompts, max_new_tokens=24, temperature=0.0, method="ar")
    outs = pipe.generate(prompts, max_new_tokens=24, temperature=0.0)  # pard, from the draft's config
    assert [o.token_ids for o in outs] == [o.token_ids for o in ar]
    # trained: it gets a guess right in a good share of rounds (an untrained draft stays near 1.0 a prompt)
    assert sum(o.stats.mean_accepted for o in outs) > 2.5
