"""RapPipeline (Freestyler, Ning et al. 2024): lyrics, a beat and a voice prompt in, rapped vocals and the mix out.
The token LM writes vocal speech tokens for the beat's whole length, decoded speculatively with draft heads; the
flow-matching decoder turns them plus the prompt's mel into mel frames; a vocoder (the model's neural one, or
Griffin-Lim) makes audio; the vocals are mixed back over the beat."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from modalities.audio.features import load_audio, log_mel, save_audio, voice_prompt
from modalities.audio.flow import FlowDecoder, tokens_to_audio
from modalities.audio.vocoder import choose_vocoder, load_vocoder
from modalities.audio.tokenizer import SpeechTokenizer
from modalities.audio.espeak import phonemes as phonemize
from specgen import CachedLM, DraftConfig, Sampling, Stats, generate, make_drafter, tree_rule
from specgen.acceptance import tolerance_options
from specgen.loading import check_vocabulary, load_lm_and_heads, part_path

from .accompaniment import accompaniment_tokens
from .vocab import LINE, RapVocab, word_slots

PROMPT_SECONDS, MIN_PROMPT_SECONDS, MAX_WORDS_PER_LINE = 3.0, 1.0, 8


@dataclass
class RapResult:
    vocals: np.ndarray
    mix: np.ndarray
    sample_rate: int
    stats: Stats  # of the token stage
    tokens: list[int]
    bpm: float
    seconds_total: float = 0.0

    @property
    def real_time_factor(self) -> float:
        return self.seconds_total / max(len(self.mix) / self.sample_rate, 1e-9)

    def save(self, path: str, stem: str = "mix"):
        if stem not in ("mix", "vocals"):
            raise ValueError(f"stem must be 'mix' or 'vocals', got {stem!r}")
        save_audio(path, self.mix if stem == "mix" else self.vocals, self.sample_rate)


def lyric_lines(lyrics: str) -> list[str]:
    lines = [ln.strip() for ln in lyrics.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("the lyrics are empty: give one line of lyrics per bar")
    for ln in lines:
        if len(ln.split()) > MAX_WORDS_PER_LINE:
            raise ValueError(f"the line {ln!r} has {len(ln.split())} words; a line is one bar, at most "
                             f"{MAX_WORDS_PER_LINE} words (one per eighth note): split it")
    return lines


class RapPipeline:
    def __init__(self, lm, vocab: RapVocab, tokenizer: SpeechTokenizer, flow: FlowDecoder, heads=None,
                 default_prompt: str | None = None, vocoder=None):
        self.lm, self.vocab, self.tokenizer, self.flow = CachedLM(lm), vocab, tokenizer, flow
        self.heads, self.default_prompt, self.vocoder = heads, default_prompt, vocoder
        self.sample_rate = tokenizer.cfg.sample_rate
        check_vocabulary(len(vocab), self.lm.vocab, "rap")

    @classmethod
    def from_pretrained(cls, path: str, device=None, dtype=None) -> "RapPipeline":
        """A folder with lm/ (+ rap_vocab.json), tokenizer/, flow/, optionally heads/, vocoder/ and prompt.wav;
        tokenizer/, flow/ and vocoder/ may instead be another model's, named in the folder's shared.json (the zoo's
        rap model uses the speech model's)."""
        lm, heads = load_lm_and_heads(path, device, dtype, what="rap LM", narrow=True)
        prompt = os.path.join(path, "prompt.wav")
        tokenizer = SpeechTokenizer.load(part_path(path, "tokenizer"))
        return cls(lm, RapVocab.load(os.path.join(path, "lm")), tokenizer,
                   FlowDecoder.load(part_path(path, "flow")).to(lm.device), heads,
                   prompt if os.path.isfile(prompt) else None, load_vocoder(path, tokenizer.cfg, lm.device))

    def voice(self, voice_prompt_path) -> np.ndarray:
        if voice_prompt_path is None:
            if self.default_prompt is None:
                raise ValueError("no voice prompt given and this model ships none: pass voice_prompt='ref.wav'")
            voice_prompt_path = self.default_prompt
        return voice_prompt(voice_prompt_path, self.sample_rate, PROMPT_SECONDS, MIN_PROMPT_SECONDS)

    def generate(self, lyrics: str, accompaniment: str, voice_prompt: str | None = None, method: str = "heads",
                 temperature: float = 1.0, top_k: int = 0, seed: int = 0, flow_steps: int = 8,
                 num_draft_tokens: int = 8, acceptance: str | None = None, tolerance: int | None = None,
                 beat_gain: float = 0.6, vocoder: str = "auto",
                 drafting: DraftConfig | None = None) -> RapResult:
        """Rap `lyrics` (one line per bar, the first bar of the beat left as an intro) over the beat file
        `accompaniment` in the prompt's voice. method: heads (speculative) or ar. A `tolerance` k (with no other
        `acceptance` named)
        decodes the heads with VADUSA tolerance acceptance: a guess is kept when it is among the target's top k;
        k=1 keeps only the target's top choice (greedy's output at temperature 0). Stats report every tolerance
        as lossy; `ar` ignores it.
        vocoder: auto (the model's neural vocoder when it ships one, else Griffin-Lim), neural or griffin-lim.
        drafting: how the heads draft (`DraftConfig`): its tree_size defaults to the heads' measured CPU size, 7
        for the zoo model, else by device (8 on CPU, 32 on CUDA); its draws pick the guesses when sampling
        losslessly: auto or sample (drawn from the heads' distribution, accepted more often), or top (their
        top-k; see `HeadDrafter`)."""
        t0 = time.perf_counter()
        if method not in ("heads", "ar"):
            raise ValueError(f"unknown method {method!r}: choose 'heads' or 'ar'")
        if method == "heads" and self.heads is None:
            raise ValueError("this rap model ships no draft heads: use method='ar'")
        voc = choose_vocoder(vocoder, self.vocoder)
        if tolerance is not None and acceptance is None:
            acceptance = "tolerance"
        options = tolerance_options(acceptance, tolerance)
        if method == "ar":  # plain sampling: no acceptance rule applies
            acceptance, options = None, None
        lines = lyric_lines(lyrics)
        beat = load_audio(accompaniment, self.sample_rate, "beat")
        acc, bpm, grid = accompaniment_tokens(beat, self.sample_rate)
        bars = len(grid) // 8
        if len(lines) > bars - 1:
            raise ValueError(f"the lyrics have {len(lines)} lines but the beat has room for {max(bars - 1, 0)} "
                             f"(one bar each after a one-bar intro, {bars} bars at {bpm:.0f} BPM): shorten the "
                             f"lyrics or give a longer beat")
        prompt_audio = torch.from_numpy(self.voice(voice_prompt))
        prompt_mel = log_mel(prompt_audio, self.tokenizer.cfg)
        ids = self.vocab.prefix(LINE.join(phonemize(ln) for ln in lines), acc,
                                self.tokenizer.encode_mel(prompt_mel).tolist())
        frames = len(log_mel(torch.from_numpy(beat), self.tokenizer.cfg))  # vocals as long as the beat
        budget, order = frames, None
        if self.vocab.aligned:  # each word's phonemes at the frame of its slot on the beat's grid
            words = self.vocab.word_ids(lines)
            fps = self.tokenizer.cfg.frames_per_second
            order = self.vocab.order(words, [round(float(grid[k]) * fps) for k in word_slots(lines)])
            budget += sum(len(w) for w in words)
        context = self.lm.context
        if context is not None and len(ids) + budget + num_draft_tokens > context:
            raise ValueError(f"the song needs {len(ids) + budget} tokens but the rap LM's context is {context}: "
                             f"give a shorter beat (or fewer lines)")
        drafter = None
        if method == "heads":
            drafter = make_drafter(self.heads.kind, self.heads, drafting, tree_rule(acceptance, temperature, options))
        gen = torch.Generator(self.lm.device).manual_seed(seed)
        out = generate(self.lm, [ids], drafter, Sampling(temperature, top_k), budget, num_draft_tokens, (), None,
                       gen, acceptance, options, self.vocab.allowed, order)[0]
        tokens = self.vocab.speech_tokens(out.token_ids)
        vocals = tokens_to_audio(self.flow, self.tokenizer, tokens, prompt_mel, flow_steps, seed, voc)
        vocals = np.pad(vocals, (0, max(0, len(beat) - len(vocals))))[: len(beat)]
        vocals = 0.8 * vocals / max(float(np.abs(vocals).max()), 1e-6)
        mix = vocals + beat_gain * beat
        mix = (mix / max(1.0, float(np.abs(mix).max()) / 0.98)).astype(np.float32)
        return RapResult(vocals.astype(np.float32), mix, self.sample_rate, out.stats, tokens, bpm,
                         time.perf_counter() - t0)
