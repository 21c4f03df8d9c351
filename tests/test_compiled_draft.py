"""Compiled Hydra++ draft rounds (backend "compile", torch.compile): the same round as the eager one, traced once
per tree shape and batch, and a decode that uses it says exactly what the eager decode says."""
import gc

import pytest
import torch

from specgen import CachedLM, DraftConfig, Sampling, generate, make_drafter
from specgen.drafters import hydra as hydra_drafters
from tiny import random_heads, tiny_model

pytest.importorskip("torch._inductor")


@pytest.fixture(scope="module")
def setup():
    target = tiny_model("llama", vocab=97, init=0.5, seed=3)
    return target, random_heads(target, "hydra", scale=2.0, seed=5)


def decode(target, heads, compile, sampling, seed=0, prompts=([5, 6, 7, 8],), tokens=40):
    backend = "compile" if compile else "eager"
    drafter = make_drafter("hydra", heads, DraftConfig(tree_size=7, dtype=torch.float32, backend=backend))
    gen = torch.Generator().manual_seed(seed)
    outs = generate(CachedLM(target), [list(p) for p in prompts], drafter, sampling, tokens, 8, generator=gen)
    return [o.token_ids for o in outs], drafter


def test_a_compiled_round_drafts_what_the_eager_round_drafts(setup, monkeypatch):
    """Capture the rounds of a sampled decode run compiled, and redo each eagerly from the same state and noise:
    the same tokens and validity, and the same distributions up to float rounding."""
    target, heads = setup
    rounds = []
    compiled = hydra_drafters.compiled_hydra_round()

    def spy(*args):
        out = compiled(*args)
        rounds.append((args, out))
        return out

    monkeypatch.setattr(hydra_drafters, "compiled_hydra_round", lambda: spy)
    _, drafter = decode(target, heads, True, Sampling(temperature=1.0))
    assert drafter.compiled and len(rounds) >= 3  # the compiled round ran (the last, shorter ones run eagerly)
    with torch.inference_mode():
        for args, (tokens, valid, q) in rounds:
            e_tokens, e_valid, e_q = hydra_drafters.hydra_round(*args)
            assert torch.equal(tokens, e_tokens) and torch.equal(valid, e_valid)
            # (a second sibling's q is renormalized from what its first left, which can be a sliver of mass)
            assert torch.allclose(q, e_q, atol=1e-4)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_compiled_decode_says_what_the_eager_decode_says(setup, temperature):
    """Greedy and sampled, one row and a batch of two (rows of different lengths, so left padding in the window):
    token for token the same from the same seed."""
    target, heads = setup
    sampling = Sampling(temperature=temperature)
    for prompts in ([[5, 6, 7, 8]], [[5, 6, 7, 8], [9, 10]]):
        eager, _ = decode(target, heads, False, sampling, seed=4, prompts=prompts)
        compiled, _ = decode(target, heads, True, sampling, seed=4, prompts=prompts)
        assert compiled == eager


def test_compile_is_refused_for_drafters_that_have_no_compiled_round(setup):
    target, _ = setup
    with pytest.raises(ValueError, match="hydra and hawk"):
        make_drafter("medusa", random_heads(target, "medusa"), DraftConfig(backend="compile"))
    with pytest.raises(ValueError, match="Hydra"):
        make_drafter("hawk", random_heads(target, "hawk"), DraftConfig(backend="compile"))  # Medusa rows
    for method in ("redrafter", "ngram", "ar"):  # refused before anything else is looked at
        with pytest.raises(ValueError, match="hydra and hawk"):
            make_drafter(method, None, DraftConfig(backend="compile"))


def test_an_error_of_the_round_itself_is_raised_not_taken_for_a_compiler_failure(setup, monkeypatch):
    target, heads = setup

    def failing(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(hydra_drafters, "compiled_hydra_round", lambda: failing)
    monkeypatch.setattr(hydra_drafters, "_COMPILED", {})
    with pytest.raises(RuntimeError, match="out of memory"):
        decode(target, heads, True, Sampling(temperature=1.0), seed=2)
    assert hydra_drafters._COMPILED == {}  # compiled rounds stay on for the rest of the process


def test_a_compiler_failure_falls_back_to_eager_rounds_with_a_warning(setup, monkeypatch):
    """Where torch.compile cannot run (no C++ toolchain, say), the decode drafts eagerly and says why, once."""
    target, heads = setup

    def broken(*args):
        from torch._inductor.exc import InvalidCxxCompiler

        raise InvalidCxxCompiler()  # its message: "No working C++ compiler found in ..."

    monkeypatch.setattr(hydra_drafters, "compiled_hydra_round", lambda: broken)
    monkeypatch.setattr(hydra_drafters, "_COMPILED", {})  # (what the failure marks as unavailable)
    eager, _ = decode(target, heads, False, Sampling(temperature=1.0), seed=2)
    with pytest.warns(UserWarning, match="No working C\\+\\+ compiler found.*drafting eagerly"):
        fallback, drafter = decode(target, heads, True, Sampling(temperature=1.0), seed=2)
    assert fallback == eager and not drafter.compiled


def test_prompts_longer_than_the_window_are_traced_once(setup, monkeypatch):
    """The window of a prompt longer than it starts as a slice of the prompt's states; it must not carry the
    prompt's strides into the compiled round, or every prompt length is traced again (a rap benchmark hit
    torch's recompile limit that way, and its compiled row ran slower than the eager one)."""
    target, heads = setup
    graphs = []

    def backend(gm, example_inputs):  # called once per trace
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    counted = torch.compile(hydra_drafters.hydra_round, backend=backend, dynamic=False)
    monkeypatch.setattr(hydra_drafters, "compiled_hydra_round", lambda: counted)
    window = heads.config["window"]
    for length in (window + 6, window + 17):
        # (the last decode's CachedLM left a hidden-state hook on the target's output layer, which fp32 heads share,
        # and the round is traced again if the hook count changed; the next CachedLM removes it once it is gone)
        gc.collect()
        _, drafter = decode(target, heads, True, Sampling(temperature=1.0),
                            prompts=([3 + i % 90 for i in range(length)],), tokens=30)
        assert drafter.compiled
    assert len(graphs) == 1
