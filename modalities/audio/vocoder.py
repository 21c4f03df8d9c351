"""A small neural vocoder trained here, to compare with Griffin-Lim: a Vocos-style network (Siuzdak 2024) that
works at the mel frame rate. A 1-D convolution and ConvNeXt blocks (Liu et al. 2022) read the log-mel frames and
predict, per frame, the log magnitude and the phase of every STFT bin; an inverse STFT makes the waveform. No
upsampling layers, so it is cheap on a CPU. Trained without a discriminator (multi-resolution STFT and mel
losses only), which keeps training to minutes on two cores and costs some crispness."""
from __future__ import annotations

import torch
from torch import nn

from .features import MelConfig, log_mel, multi_resolution_magnitudes
from .stored import StoredModule


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel: int):
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, T, dim]
        h = self.depthwise(x.transpose(1, 2)).transpose(1, 2)
        return x + self.scale * self.down(nn.functional.gelu(self.up(self.norm(h))))


class MelVocoder(StoredModule):
    stem, what = "vocoder", "neural vocoder"

    def __init__(self, config: dict):
        super().__init__()
        c = {"n_mels": 80, "dim": 192, "hidden": 576, "layers": 6, "kernel": 7, "n_fft": 1024, "hop": 320,
             "sample_rate": 16000, **config}
        self.config = c
        self.embed = nn.Conv1d(c["n_mels"], c["dim"], c["kernel"], padding=c["kernel"] // 2)
        self.norm = nn.LayerNorm(c["dim"])
        self.blocks = nn.ModuleList(ConvNeXtBlock(c["dim"], c["hidden"], c["kernel"]) for _ in range(c["layers"]))
        self.final = nn.LayerNorm(c["dim"])
        self.out = nn.Linear(c["dim"], c["n_fft"] + 2)  # log magnitude and phase of n_fft // 2 + 1 bins
        self.register_buffer("window", torch.hann_window(c["n_fft"]), persistent=False)

    def forward(self, logmel: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """logmel [b, T, n_mels] (natural log, as `log_mel` makes it) -> audio [b, length or (T - 1) * hop]."""
        c = self.config
        x = self.embed(((logmel + 5.0) / 3.0).transpose(1, 2)).transpose(1, 2)
        x = self.norm(x)
        for block in self.blocks:
            x = block(x)
        logmag, phase = self.out(self.final(x)).float().chunk(2, -1)
        spec = torch.polar(logmag.clamp(max=8.0).exp(), phase)  # [b, T, bins]
        length = length if length is not None else (logmel.shape[1] - 1) * c["hop"]
        return torch.istft(spec.transpose(1, 2), c["n_fft"], c["hop"], window=self.window,
                           center=True, length=length)

    def loss(self, audio: torch.Tensor, mel_cfg: MelConfig) -> torch.Tensor:
        """Reconstruct audio [b, samples] from its own log-mel: multi-resolution STFT loss (spectral convergence
        plus log-magnitude L1, Yamamoto et al. 2020) and the log-mel L1."""
        mel = log_mel(audio, mel_cfg)
        pred = self(mel, audio.shape[-1])
        total = (log_mel(pred, mel_cfg) - mel).abs().mean()
        for want, got in zip(multi_resolution_magnitudes(audio), multi_resolution_magnitudes(pred)):
            total = total + (want - got).norm() / want.norm().clamp(min=1e-6)
            total = total + (want.clamp(min=1e-5).log() - got.clamp(min=1e-5).log()).abs().mean()
        return total

    @torch.no_grad()
    def vocode(self, logmel: torch.Tensor) -> torch.Tensor:
        """One log-mel [T, n_mels] -> audio [(T - 1) * hop] (at least one hop), like `griffin_lim`."""
        if logmel.shape[0] < 1:
            raise ValueError("no mel frames to turn into audio")
        device = next(self.parameters()).device
        keep = max(logmel.shape[0] - 1, 1) * self.config["hop"]
        return self(logmel.float()[None].to(device), keep)[0].cpu()


VOCODERS = ("auto", "neural", "griffin-lim")


def load_vocoder(folder: str, cfg: MelConfig, device=None) -> MelVocoder | None:
    """A model folder's neural vocoder (its vocoder/ part, or the one its shared.json points at), or None when it
    ships none; refuses one made for other mel frames."""
    from specgen.loading import part_path

    path = part_path(folder, "vocoder", required=False)
    if path is None:
        return None
    vocoder = MelVocoder.load(path)
    c = vocoder.config
    want = {"n_mels": cfg.n_mels, "hop": cfg.hop, "sample_rate": cfg.sample_rate, "fmin": cfg.fmin, "fmax": cfg.fmax}
    want = {k: v for k, v in want.items() if k in c}  # older vocoder checkpoints store no fmin/fmax
    got = {k: c[k] for k in want}
    if got != want:
        raise ValueError(f"{path} was trained for mel frames {got} but this model's tokenizer makes {want}: "
                         f"retrain the vocoder on this model's features or remove the folder")
    return vocoder.to(device) if device is not None else vocoder


def choose_vocoder(choice: str, shipped: MelVocoder | None) -> MelVocoder | None:
    """The vocoder for one call: 'auto' is the model's neural vocoder when it ships one, else Griffin-Lim; None
    means Griffin-Lim."""
    if choice not in VOCODERS:
        raise ValueError(f"unknown vocoder {choice!r}: choose one of {', '.join(VOCODERS)}")
    if choice == "neural" and shipped is None:
        raise ValueError("this model ships no neural vocoder (no vocoder/ folder): use vocoder='griffin-lim'")
    return None if choice == "griffin-lim" else shipped
