"""A PARD draft saved with save_pretrained (pard_token in its config) loads back and drafts K tokens a forward."""
import torch
from transformers import AutoModelForCausalLM

from specgen import CachedLM, Sampling, generate, make_drafter
from specgen.drafters import PardDrafter
from tiny import perturbed, tiny_model


def test_saved_pard_draft_loads_and_drafts(tmp_path):
    target = tiny_model("llama", layers=3)
    perturbed(target, 0.2, pard_token=3).save_pretrained(tmp_path / "draft")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "draft")
    assert loaded.config.pard_token == 3
    drafter = make_drafter("pard", loaded)
    assert isinstance(drafter, PardDrafter) and drafter.mask_id == 3
    prompt = [5, 6, 7, 8, 9]
    out = generate(CachedLM(target), [prompt], drafter, max_new_tokens=25, num_draft_tokens=6)[0]
    ref = generate(CachedLM(target), [prompt], None, max_new_tokens=25)[0]
    assert out.token_ids == ref.token_ids
    # at most one draft forward per round (plus the draft's prefill): K tokens from a single forward
    assert out.stats.draft_forwards <= out.stats.target_forwards
    classic = generate(CachedLM(target), [prompt], make_drafter("draft_model", loaded), max_new_tokens=25,
                       num_draft_tokens=6)[0]
    assert classic.stats.draft_forwards > 2 * classic.stats.target_forwards


def test_pard_round_feeds_masks_at_the_next_positions():
    """The K-1 mask tokens sit at positions t+1..t+K-1 and leave the draft cache after the round."""
    model = tiny_model("llama")
    model.config.pard_token = 4
    d = PardDrafter(model)
    d.start([[5, 6, 7]], [8], Sampling(), model.config.vocab_size, torch.device("cpu"))
    tree = d.propose(4)
    assert tree.tokens.shape == (1, 4)
    assert d.lm.pos.tolist() == [4]  # prompt (3) + the pending token; masks dropped
    with torch.no_grad():
        ref = model(torch.tensor([[5, 6, 7, 8, 4, 4, 4]])).logits[0, 3:].argmax(-1)
    assert tree.tokens[0].tolist() == ref.tolist()
