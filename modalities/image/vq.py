"""The image tokenizer trained here: a small diffusers `VQModel` (VQ-VAE, van den Oord et al. 2017) that turns a
64x64 RGB image into a 16x16 raster of codebook indices and back."""
from __future__ import annotations

import os

import numpy as np
import torch

DEFAULT = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
               up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(32, 64, 64), layers_per_block=1,
               latent_channels=8, vq_embed_dim=8, num_vq_embeddings=256, norm_num_groups=16, sample_size=64,
               lookup_from_codebook=True)


class ImageTokenizer:
    def __init__(self, model=None, **config):
        from diffusers import VQModel

        self.model = model if model is not None else VQModel(**{**DEFAULT, **config})

    @property
    def codebook(self) -> torch.Tensor:
        """[codes, dim] code vectors (for codebook-neighbour acceptance)."""
        return self.model.quantize.embedding.weight

    @property
    def size(self) -> int:
        return self.codebook.shape[0]

    @staticmethod
    def to_tensor(images) -> torch.Tensor:
        """PIL images or uint8 arrays [b, h, w, 3] -> floats [b, 3, h, w] in [-1, 1]."""
        arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    @staticmethod
    def to_images(x: torch.Tensor) -> np.ndarray:
        return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction MSE plus the codebook and commitment terms; returns (total, reconstruction)."""
        h = self.model.encode(x).latents
        quant, commit, _ = self.model.quantize(h)
        rec = self.model.decoder(self.model.post_quant_conv(quant))
        mse = (rec - x).pow(2).mean()
        return mse + commit, mse

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        """Images -> tokens [b, 16, 16]."""
        x = self.to_tensor(images).to(self.codebook.device)
        _, _, (_, _, idx) = self.model.quantize(self.model.encode(x).latents)
        return idx.view(x.shape[0], x.shape[2] // 4, x.shape[3] // 4)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        """Tokens [b, h, w] -> uint8 images [b, 4h, 4w, 3]."""
        b, h, w = tokens.shape
        out = self.model.decode(tokens.reshape(-1), force_not_quantize=True, shape=(b, h, w, self.codebook.shape[1]))
        return self.to_images(out.sample)

    def save(self, path: str):
        self.model.save_pretrained(path)

    @classmethod
    def load(cls, path: str) -> "ImageTokenizer":
        from diffusers import VQModel

        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"{path!r} holds no image tokenizer (a diffusers VQModel folder)")
        return cls(VQModel.from_pretrained(path).eval())
