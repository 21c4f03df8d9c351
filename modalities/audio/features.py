"""Audio I/O and features shared by speech and rap: mono float audio at one sample rate, log-mel spectrograms
over `torch.stft`, and Griffin-Lim inversion (the baseline vocoder). No torchaudio (it cannot load beside the
CPU build of torch); resampling is scipy's polyphase filter."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 320  # 50 frames per second at 16 kHz
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: MelConfig) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, area-normalised: [n_mels, n_fft // 2 + 1]."""
    freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (upper - lower))
    return torch.tensor(bank, dtype=torch.float32)


def stft_magnitude(audio: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """|STFT| [..., frames, n_fft // 2 + 1] with a Hann window, centred frames. Audio shorter than half a window
    (a clip cut off after a token or two) is padded with silence, which centring's reflection could not do."""
    short = cfg.n_fft // 2 + 1 - audio.shape[-1]
    if short > 0:
        audio = torch.nn.functional.pad(audio, (0, short))
    window = torch.hann_window(cfg.n_fft, device=audio.device)
    spec = torch.stft(audio, cfg.n_fft, cfg.hop, window=window, center=True, return_complex=True)
    return spec.abs().transpose(-1, -2)


STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop): the vocoder's loss and the LSD metric


def multi_resolution_magnitudes(audio: torch.Tensor, resolutions=STFT_RESOLUTIONS) -> list[torch.Tensor]:
    """`stft_magnitude` at each (n_fft, hop) in `resolutions`: [..., frames, n_fft // 2 + 1] each."""
    return [stft_magnitude(audio, MelConfig(n_fft=n_fft, hop=hop)) for n_fft, hop in resolutions]


def log_mel(audio: torch.Tensor, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """audio [..., samples] -> log-mel [..., frames, n_mels] (natural log, floor 1e-5)."""
    mel = stft_magnitude(audio.float(), cfg) @ mel_filterbank(cfg).to(audio.device).T
    return mel.clamp(min=1e-5).log()


MIN_GL_FRAMES = 4  # Griffin-Lim pads shorter mels with silence


def griffin_lim(logmel: torch.Tensor, cfg: MelConfig = MelConfig(), iters: int = 48, seed: int = 0) -> torch.Tensor:
    """Invert a log-mel [frames, n_mels] to audio [samples]: least-squares magnitudes from the mel filters, then
    Griffin-Lim phase recovery (Griffin and Lim 1984) with momentum (Perraudin et al. 2013)."""
    bank = mel_filterbank(cfg).to(logmel.device)
    mag = (logmel.float().exp() @ torch.linalg.pinv(bank).T).clamp(min=0.0).T  # [freq, frames]
    frames = mag.shape[1]
    if frames < 1:
        raise ValueError("no mel frames to turn into audio")
    # the STFT round trip needs a few frames (its reflect padding is half a window): pad a short mel with silence
    # and keep one hop per original frame (at least one hop)
    keep = max(frames - 1, 1) * cfg.hop
    mag = torch.nn.functional.pad(mag, (0, max(0, MIN_GL_FRAMES - frames)))
    window = torch.hann_window(cfg.n_fft, device=logmel.device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    angles = torch.polar(torch.ones_like(mag), 2 * math.pi * torch.rand(mag.shape, generator=g).to(mag.device))
    prev = torch.zeros_like(angles)
    length = (mag.shape[1] - 1) * cfg.hop
    for _ in range(iters):
        audio = torch.istft(mag * angles, cfg.n_fft, cfg.hop, window=window, length=length)
        rebuilt = torch.stft(audio, cfg.n_fft, cfg.hop, window=window, return_complex=True)
        accel = rebuilt + 0.99 * (rebuilt - prev)
        prev = rebuilt
        angles = accel / accel.abs().clamp(min=1e-8)
    return torch.istft(mag * angles, cfg.n_fft, cfg.hop, window=window, length=length)[:keep]


def resample(audio: np.ndarray, source: int, target: int) -> np.ndarray:
    if source == target:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(source, target)
    return resample_poly(audio, target // g, source // g).astype(np.float32)


def load_audio(path: str, sample_rate: int = 16000, what: str = "audio file") -> np.ndarray:
    """Mono float32 audio at `sample_rate` (other rates are resampled); a clear ValueError if unreadable."""
    import soundfile as sf

    if not os.path.isfile(path):
        raise ValueError(f"{what} {path!r} does not exist: give the path of a WAV or FLAC file")
    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ValueError(f"{what} {path!r} cannot be read as audio ({e}): give a WAV or FLAC file") from e
    return resample(audio.mean(1), sr, sample_rate)


def save_audio(path: str, audio, sample_rate: int):
    """Write a 16-bit WAV under a temporary name, then rename: no half-written file on a crash."""
    import soundfile as sf

    audio = np.asarray(audio.detach().cpu() if isinstance(audio, torch.Tensor) else audio, dtype=np.float32)
    tmp = f"{path}.tmp{os.getpid()}.wav"
    sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")
    os.replace(tmp, path)


def voice_prompt(source, sample_rate: int, seconds: float = 3.0, min_seconds: float = 1.0) -> np.ndarray:
    """The first `seconds` of voice in a prompt (a path, or samples at `sample_rate`), leading silence skipped;
    a clear ValueError for a missing, unreadable, too short or silent prompt."""
    audio = load_audio(source, sample_rate, "voice prompt") if isinstance(source, str) \
        else np.asarray(source, dtype=np.float32)
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak < 1e-4:
        raise ValueError("the voice prompt is silent: give a recording of the voice to imitate")
    loud = np.flatnonzero(np.abs(audio) > 0.02 * peak)
    audio = audio[loud[0] :]
    if len(audio) / sample_rate < min_seconds:
        raise ValueError(f"the voice prompt has {len(audio) / sample_rate:.2f} s of voice: give at least "
                         f"{min_seconds:.0f} s ({seconds:.0f} s works best)")
    return audio[: int(seconds * sample_rate)]
