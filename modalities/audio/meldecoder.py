"""A learned token-to-mel decoder for a one-voice tokenizer: the tokens' centroids plus a correction computed from
the tokens around each frame (a stack of dilated 1-D convolutions, about half a second either side).

A k-means token keeps only its frame's cluster mean, so the centroid mel steps from one cluster to the next and loses
what tells neighbouring sounds apart; the frames around a token say much of what it lost. Trained by L1 on the
normalised log-mel of the voice's own clips (`python -m modalities.speech.train meldecoder`); its last layer starts
at zero, so an untrained decoder gives exactly the centroids. Deterministic and one forward for the whole utterance:
no prompt, no Euler steps."""
from __future__ import annotations

import torch
from torch import nn

from .stored import StoredModule


class _Block(nn.Module):
    def __init__(self, dim: int, kernel: int, dilation: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, dim)
        self.conv = nn.Conv1d(dim, dim, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.mix = nn.Conv1d(dim, dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mix(nn.functional.gelu(self.conv(self.norm(h))))


class MelDecoder(StoredModule):
    stem, what = "meldecoder", "token-to-mel decoder"

    def __init__(self, config: dict):
        super().__init__()
        c = {"vocab": 512, "n_mels": 80, "dim": 192, "kernel": 5, "dilations": [1, 2, 4, 1, 2, 4], **config}
        if c["kernel"] % 2 == 0:
            raise ValueError(f"kernel {c['kernel']} must be odd (the output keeps the input's frames)")
        self.config = c
        self.tokens = nn.Embedding(c["vocab"], c["dim"])
        self.body = nn.Sequential(*(_Block(c["dim"], c["kernel"], d) for d in c["dilations"]))
        self.out = nn.Linear(c["dim"], c["n_mels"])
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        """tokens [b, F], their normalised centroids [b, F, mels] -> normalised mel [b, F, mels]."""
        h = self.body(self.tokens(tokens).transpose(1, 2)).transpose(1, 2)
        return centroids + self.out(h)

    def loss(self, tokens: torch.Tensor, mel: torch.Tensor, tokenizer) -> torch.Tensor:
        """L1 between the decoded and the true normalised log-mel; tokens [b, F], mel [b, F, mels] (log-mel)."""
        return (self(tokens, tokenizer.centroids.to(mel)[tokens]) - tokenizer.normalize(mel)).abs().mean()

    @torch.no_grad()
    def decode(self, tokenizer, tokens) -> torch.Tensor:
        """Speech tokens [F] -> log-mel [F, mels] (float32, CPU), in `tokenizer`'s mel space."""
        p = next(self.parameters())
        if tokenizer.size != self.config["vocab"]:
            raise ValueError(f"the mel decoder was trained for {self.config['vocab']} tokens, the tokenizer has "
                             f"{tokenizer.size}: use the decoder trained with this tokenizer")
        tok = torch.as_tensor(tokens, device=p.device)[None]
        z = self(tok, tokenizer.centroids.to(p.device, p.dtype)[tok])[0]
        return tokenizer.denormalize(z.float().cpu())
