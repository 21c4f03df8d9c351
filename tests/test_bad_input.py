"""Bad input gets a ValueError that names the problem, before any work is done."""
import pytest

from modalities.text import TextPipeline
from specgen import Sampling
from tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    tok = tiny_tokenizer(vocab=300)
    target = tiny_model("llama", vocab=len(tok), context=32)
    target.save_pretrained(root / "target")
    tok.save_pretrained(root / "target")
    tiny_model("llama", vocab=len(tok)).save_pretrained(root / "nopard")  # a draft without pard_token
    big = tiny_model("llama", vocab=len(tok) + 50)
    big.config.pard_token = 2
    big.save_pretrained(root / "bigvocab")
    return root


@pytest.fixture(scope="module")
def pipe(family):
    return TextPipeline.from_pretrained(str(family / "target"))


def test_missing_path(family):
    with pytest.raises(ValueError, match="is not a folder"):
        TextPipeline.from_pretrained(str(family / "nowhere"))
    with pytest.raises(ValueError, match="draft path .* is not a folder"):
        TextPipeline.from_pretrained(str(family / "target"), draft=str(family / "nowhere"))


def test_vocab_mismatch(family):
    with pytest.raises(ValueError, match="vocabulary .* larger than the target"):
        TextPipeline.from_pretrained(str(family / "target"), draft=str(family / "bigvocab"))


def test_pard_needs_pard_token(family):
    with pytest.raises(ValueError, match="no `pard_token`"):
        TextPipeline.from_pretrained(str(family / "target"), draft=str(family / "nopard"), method="pard")
    # the same draft is fine for classic drafting, which is what it defaults to
    assert TextPipeline.from_pretrained(str(family / "target"), draft=str(family / "nopard")).method == "draft_model"


def test_method_needs_a_draft_or_exists(family):
    with pytest.raises(ValueError, match="needs a draft model"):
        TextPipeline.from_pretrained(str(family / "target"), method="pard")
    with pytest.raises(ValueError, match="unknown method"):
        TextPipeline.from_pretrained(str(family / "target"), method="beam")


def test_empty_prompt(pipe):
    with pytest.raises(ValueError, match="prompt is empty"):
        pipe.generate("")
    with pytest.raises(ValueError, match="no prompts"):
        pipe.generate([])


def test_prompt_longer_than_context(pipe):
    with pytest.raises(ValueError, match="exceed the model's context of 32"):
        pipe.generate("def fib(n): return n " * 20, max_new_tokens=4)
    with pytest.raises(ValueError, match="lower max_new_tokens"):
        pipe.generate("def", max_new_tokens=40)


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_new_tokens=-1), "max_new_tokens must be"),
    (dict(temperature=-0.5), "temperature must be >= 0"),
    (dict(temperature=1.0, top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(temperature=1.0, top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(temperature=1.0, top_k=-2), "top_k must be"),
    (dict(num_draft_tokens=0, method="ngram"), "num_draft_tokens must be"),
    (dict(stop=[""]), "stop string is empty"),
])
def test_impossible_settings(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe.generate("def", **kwargs)


def test_sampling_settings_are_checked_on_construction():
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=-1)


def test_max_new_tokens_zero_gives_nothing(pipe):
    out = pipe.generate("def", max_new_tokens=0)
    assert out.token_ids == [] and out.text == ""


@pytest.mark.parametrize("module", ["modalities.speech.data", "modalities.rap.data"])
def test_data_builders_without_the_text_corpus_say_how_to_build_it(module, tmp_path):
    import importlib

    with pytest.raises(SystemExit, match="train_text_zoo.sh corpus"):
        importlib.import_module(module).main(["--corpus", str(tmp_path / "nocorpus"), "--out", str(tmp_path / "out"),
                                              "--train", "1", "--heldout", "1"])


@pytest.mark.parametrize("native", [False, True, None])
def test_bf16_on_a_cpu_without_native_bf16_warns_and_names_the_fix(native, monkeypatch):
    import warnings

    import torch

    from specgen import utils

    monkeypatch.setattr(utils, "cpu_bf16_native", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert utils.resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
        assert utils.resolve_dtype(None, torch.device("cpu")) == torch.float32
    said = [str(w.message) for w in caught]
    assert (len(said) == 1 and "leave --dtype out" in said[0]) if native is False else not said

