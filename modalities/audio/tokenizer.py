"""A speech tokenizer trained here: k-means over normalised log-mel frames (50 per second), so one token per
frame. Chosen because it trains in minutes on a CPU from our own clips and needs no pretrained SSL model (none
can be downloaded); the cost is that a token keeps only a frame's coarse spectral envelope, and the
flow-matching decoder has to restore detail from the voice prompt. Decoding a token gives its centroid."""
from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file

from .features import MelConfig, log_mel


class SpeechTokenizer:
    def __init__(self, centroids: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, cfg: MelConfig = MelConfig()):
        self.centroids, self.mean, self.std, self.cfg = centroids, mean, std, cfg  # [k, n_mels], [n_mels] x2

    @property
    def size(self) -> int:
        return self.centroids.shape[0]

    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel -> per-band z-scores (the space of the centroids and of the flow-matching decoder)."""
        return (mel - self.mean.to(mel)) / self.std.to(mel)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std.to(z) + self.mean.to(z)

    def encode_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [frames, n_mels] -> tokens [frames] (nearest centroid)."""
        return torch.cdist(self.normalize(mel), self.centroids).argmin(-1)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        return self.encode_mel(log_mel(audio, self.cfg))

    def decode_mel(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [frames] -> the centroids' log-mel [frames, n_mels]."""
        return self.denormalize(self.centroids[tokens])

    def save(self, path: str):
        os.makedirs(path, exist_ok=True)
        save_file({"centroids": self.centroids.contiguous(), "mean": self.mean, "std": self.std},
                  os.path.join(path, "speech_tokenizer.safetensors"))
        with open(os.path.join(path, "speech_tokenizer.json"), "w") as f:
            json.dump({"kind": "kmeans-logmel", "size": self.size, "mel": vars(self.cfg)}, f, indent=1)

    @classmethod
    def load(cls, path: str) -> "SpeechTokenizer":
        meta = os.path.join(path, "speech_tokenizer.json")
        if not os.path.isfile(meta):
            raise ValueError(f"{path!r} holds no speech tokenizer (speech_tokenizer.json)")
        cfg = MelConfig(**json.load(open(meta))["mel"])
        t = load_file(os.path.join(path, "speech_tokenizer.safetensors"))
        return cls(t["centroids"], t["mean"], t["std"], cfg)

    @classmethod
    def fit(cls, mels: list[torch.Tensor], size: int = 512, iters: int = 25, seed: int = 0,
            cfg: MelConfig = MelConfig()) -> "SpeechTokenizer":
        """k-means (k-means++ start, Lloyd iterations) over every frame of the given log-mels."""
        frames = torch.cat(mels)
        mean, std = frames.mean(0), frames.std(0).clamp(min=1e-3)
        z = (frames - mean) / std
        g = torch.Generator().manual_seed(seed)
        if len(z) < size:
            raise ValueError(f"{len(z)} frames cannot make {size} clusters: give more audio or a smaller size")
        picks = [int(torch.randint(len(z), (1,), generator=g))]
        d = torch.cdist(z, z[picks]).squeeze(1) ** 2  # squared distance to the nearest centre so far
        for _ in range(1, size):  # k-means++: next centre drawn in proportion to squared distance
            picks.append(int(torch.multinomial(d / d.sum(), 1, generator=g)))
            d = torch.minimum(d, torch.cdist(z, z[picks[-1:]]).squeeze(1) ** 2)
        centroids = z[picks]
        for _ in range(iters):
            assign = torch.cdist(z, centroids).argmin(-1)
            sums = torch.zeros_like(centroids).index_add_(0, assign, z)
            counts = torch.bincount(assign, minlength=size).float()[:, None]
            empty = counts[:, 0] == 0
            centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1))
        return cls(centroids, mean, std, cfg)
