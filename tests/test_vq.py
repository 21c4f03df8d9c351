"""The VQ image tokenizer: 64x64 -> 16x16 tokens -> 64x64, and a few training steps lower its loss."""
import random

import torch

from modalities.image.vq import ImageTokenizer
from modalities.image.scenes import draw, random_scene


def test_vq_round_trip_shapes_and_training_step(tmp_path):
    torch.manual_seed(0)
    rng = random.Random(0)
    images = [draw(random_scene(rng), rng) for _ in range(8)]
    tok = ImageTokenizer(block_out_channels=(16, 16, 16), num_vq_embeddings=32, norm_num_groups=8)
    x = tok.to_tensor(images)
    opt = torch.optim.Adam(tok.model.parameters(), lr=2e-3)
    first, _ = tok.loss(x)
    for _ in range(5):
        loss, _ = tok.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert tok.loss(x)[0].item() < first.item()
    codes = tok.encode(images)
    assert codes.shape == (8, 16, 16) and codes.max() < 32
    out = tok.decode(codes)
    assert out.shape == (8, 64, 64, 3) and out.dtype.name == "uint8"
    tok.save(str(tmp_path / "vq"))
    again = ImageTokenizer.load(str(tmp_path / "vq"))
    assert torch.equal(again.encode(images), codes)
