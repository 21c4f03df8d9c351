"""The flow-matching decoder: seeded sampling is deterministic, and training lowers the loss."""
import torch

from modalities.audio.flow import FlowDecoder


def tiny_flow():
    torch.manual_seed(0)
    return FlowDecoder({"vocab": 16, "n_mels": 8, "dim": 32, "layers": 2, "heads": 2})


def test_flow_sampler_with_a_fixed_seed_is_deterministic(tmp_path):
    flow = tiny_flow().eval()
    tokens, prompt = torch.randint(0, 16, (2, 12)), torch.randn(2, 5, 8)
    a = flow.sample(tokens, prompt, steps=4, seed=3)
    assert a.shape == (2, 12, 8)
    assert torch.equal(a, flow.sample(tokens, prompt, steps=4, seed=3))
    assert not torch.equal(a, flow.sample(tokens, prompt, steps=4, seed=4))
    flow.save(str(tmp_path / "flow"))
    assert torch.equal(a, FlowDecoder.load(str(tmp_path / "flow")).sample(tokens, prompt, steps=4, seed=3))


def test_flow_matching_learns_a_token_to_frame_map():
    flow = tiny_flow()
    table = torch.randn(16, 8)  # each token stands for one frame
    opt = torch.optim.AdamW(flow.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        tokens = torch.randint(0, 16, (8, 10), generator=g)
        loss = flow.loss(tokens, table[tokens], torch.randn(8, 4, 8, generator=g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.6 * sum(losses[:20]) / 20
    flow.eval()
    tokens = torch.randint(0, 16, (1, 10), generator=g)
    mel = flow.sample(tokens, torch.randn(1, 4, 8), steps=8)
    assert (mel - table[tokens]).pow(2).mean() < table.pow(2).mean()  # closer to the right frames than to zero
