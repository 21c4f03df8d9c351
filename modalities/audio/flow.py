"""Conditional flow matching from speech tokens to normalised mel frames (OT-CFM: Lipman et al. 2023, Tong et
al. 2024), conditioned in context on a voice prompt's mel, as in Voicebox/E2 (Le et al. 2023): the prompt's clean frames
come first, the frames to generate follow, and a bidirectional transformer predicts the velocity of the latter.
Tokens are one per frame, so no duration model is needed. Sampling takes a few Euler steps."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .stored import StoredModule


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of flow time t in [0, 1]: [b] -> [b, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], -1)


class FlowDecoder(StoredModule):
    stem, what = "flow", "flow-matching decoder"

    def __init__(self, config: dict):
        super().__init__()
        c = {"vocab": 512, "n_mels": 80, "dim": 256, "layers": 4, "heads": 4, "sigma_min": 1e-4, **config}
        self.config = c
        d = c["dim"]
        self.tokens = nn.Embedding(c["vocab"] + 1, d)  # the last id marks prompt frames (no token given)
        self.mel_in = nn.Linear(2 * c["n_mels"], d)  # [noisy frame ; clean prompt frame or zeros]
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.pos = nn.Parameter(torch.zeros(4096, d))
        layer = nn.TransformerEncoderLayer(d, c["heads"], 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, c["layers"], enable_nested_tensor=False)
        self.out = nn.Linear(d, c["n_mels"])
        nn.init.normal_(self.pos, std=0.02)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, prompt: torch.Tensor,
                 pad: torch.Tensor | None = None) -> torch.Tensor:
        """x [b, P+F, mels] (prompt part ignored), t [b], tokens [b, F], prompt [b, P, mels] -> v [b, F, mels]."""
        b, p = prompt.shape[:2]
        ids = torch.cat([torch.full((b, p), self.config["vocab"], device=tokens.device), tokens], 1)
        cond = torch.cat([prompt, torch.zeros_like(x[:, p:])], 1)
        noisy = torch.cat([torch.zeros_like(prompt), x[:, p:]], 1)
        h = self.tokens(ids) + self.mel_in(torch.cat([noisy, cond], -1)) + self.pos[: ids.shape[1]]
        h = h + self.time(time_embedding(t, h.shape[-1]))[:, None]
        h = self.body(h, src_key_padding_mask=pad)
        return self.out(h[:, p:])

    def loss(self, tokens: torch.Tensor, mel: torch.Tensor, prompt: torch.Tensor,
             frame_mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """OT-CFM: x_t = (1 - (1 - s) t) x0 + t x1, target velocity x1 - (1 - s) x0; mel [b, F, mels] is x1."""
        s = self.config["sigma_min"]
        b = mel.shape[0]
        x0 = torch.randn(mel.shape, generator=generator, device=mel.device)
        t = torch.rand(b, generator=generator, device=mel.device)
        xt = (1 - (1 - s) * t[:, None, None]) * x0 + t[:, None, None] * mel
        target = mel - (1 - s) * x0
        x = torch.cat([torch.zeros_like(prompt), xt], 1)
        pad = None
        if frame_mask is not None:  # padded frames neither attend nor count
            pad = torch.cat([torch.zeros(prompt.shape[:2], dtype=torch.bool, device=mel.device), ~frame_mask.bool()], 1)
        err = (self.velocity(x, t, tokens, prompt, pad) - target).pow(2).mean(-1)  # [b, F]
        if frame_mask is None:
            return err.mean()
        return (err * frame_mask).sum() / frame_mask.sum().clamp(min=1)

    @torch.no_grad()
    def sample(self, tokens: torch.Tensor, prompt: torch.Tensor, steps: int = 8, seed: int = 0) -> torch.Tensor:
        """Euler integration from noise (fixed seed: the same mel every time): tokens [b, F] -> mel [b, F, mels]."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        b, f = tokens.shape
        x = torch.randn(b, f, self.config["n_mels"], generator=g).to(prompt.device, prompt.dtype)
        for i in range(steps):
            t = torch.full((b,), i / steps, device=x.device, dtype=x.dtype)
            v = self.velocity(torch.cat([torch.zeros_like(prompt), x], 1), t, tokens, prompt)
            x = x + v / steps
        return x


def tokens_to_audio(flow: FlowDecoder | None, tokenizer, tokens, prompt_mel: torch.Tensor | None, steps: int = 8,
                    seed: int = 0, vocoder=None, mel_decoder=None):
    """Speech tokens -> waveform (numpy, unscaled): the flow decoder draws the mel in the prompt's voice, then
    the neural `vocoder` (a MelVocoder) or, when None, Griffin-Lim makes it audio. `tokenizer` is the
    SpeechTokenizer the tokens came from (its mel config and normalisation). With `flow` None the mel is the
    tokens' centroids (a one-voice tokenizer keeps the words that way: `modalities.speech.ceiling`), or with a
    `mel_decoder` (a MelDecoder) the centroids corrected from the tokens around each frame; the prompt and steps are
    then not used."""
    from .features import griffin_lim

    if flow is None and mel_decoder is not None:
        mel = mel_decoder.decode(tokenizer, tokens)
    elif flow is None:
        mel = tokenizer.decode_mel(torch.as_tensor(tokens)).float().cpu()
    else:
        device = next(flow.parameters()).device
        tok = torch.as_tensor(tokens, device=device)
        z = flow.sample(tok[None], tokenizer.normalize(prompt_mel)[None].to(device), steps=steps, seed=seed)[0]
        mel = tokenizer.denormalize(z.float().cpu())
    return (vocoder.vocode(mel) if vocoder is not None else griffin_lim(mel, tokenizer.cfg)).numpy()


def resynthesize(tts, reference: np.ndarray, prompt_audio: np.ndarray, seed: int, net: bool = True) -> np.ndarray:
    """The reference's own speech tokens through the model's decoder (flow matching, else its learned token-to-mel
    decoder unless `net` is False, else the centroids) and its vocoder (the neural one when it ships one, else
    Griffin-Lim): what the tokenizer, decoder and vocoder cost before the LM adds its errors (the quality ceiling of
    every row)."""
    from .features import log_mel

    cfg = tts.tokenizer.cfg
    tokens = tts.tokenizer.encode_mel(log_mel(torch.from_numpy(reference), cfg))
    prompt_mel = log_mel(torch.from_numpy(prompt_audio[: int(3 * cfg.sample_rate)]), cfg)
    mel_decoder = getattr(tts, "mel_decoder", None)  # (the rap pipeline has none)
    return tokens_to_audio(tts.flow, tts.tokenizer, tokens, prompt_mel, seed=seed, vocoder=tts.vocoder,
                           mel_decoder=mel_decoder if net else None)
