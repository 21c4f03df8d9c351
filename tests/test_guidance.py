"""Classifier-free guidance: speculative greedy equals ar greedy with guidance on, and guidance changes output."""
import torch

from specgen import CachedLM, generate, make_drafter
from specgen.guidance import GuidedLM
from tiny import perturbed, random_heads, tiny_model

PROMPTS = [[5, 6, 7, 8, 9], [13, 14, 15, 30, 31, 32, 33]]
NULL = 3  # the "no caption" token


def uncond(prompt):
    return [NULL] * len(prompt)  # same length, conditioning removed


def test_guided_speculative_greedy_equals_guided_ar():
    target = tiny_model("llama", layers=3)
    drafts = {"draft_model": perturbed(target, 0.3), "medusa": random_heads(target, "medusa")}
    ref = generate(GuidedLM(CachedLM(target), 3.0, uncond), PROMPTS, None, max_new_tokens=20)
    plain = generate(CachedLM(target), PROMPTS, None, max_new_tokens=20)
    assert [r.token_ids for r in ref] != [p.token_ids for p in plain]  # guidance does something
    for method, draft in drafts.items():
        out = generate(GuidedLM(CachedLM(target), 3.0, uncond), PROMPTS, make_drafter(method, draft),
                       max_new_tokens=20, num_draft_tokens=4)
        assert [o.token_ids for o in out] == [r.token_ids for r in ref]
        alone = [generate(GuidedLM(CachedLM(target), 3.0, uncond), [p], make_drafter(method, draft),
                          max_new_tokens=20)[0].token_ids for p in PROMPTS]
        assert alone == [r.token_ids for r in ref]


def test_scale_one_is_the_conditioned_model():
    target = tiny_model("llama", layers=2)
    a = generate(GuidedLM(CachedLM(target), 1.0, uncond), PROMPTS, None, max_new_tokens=10)
    b = generate(CachedLM(target), PROMPTS, None, max_new_tokens=10)
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert torch.is_tensor(GuidedLM(CachedLM(target), 2.0, uncond).guide(torch.zeros(4, 5)))
