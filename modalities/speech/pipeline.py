"""SpeechPipeline: text and a voice prompt in, speech out. Phonemes (espeak-ng) and the prompt's speech tokens
form the prefix; the speech LM continues with speech tokens, decoded speculatively with VADUSA (draft heads,
a tree shaped by the heads' measured accuracy, tolerance acceptance); the flow-matching decoder turns tokens
plus the prompt's mel into mel frames (a one-voice model: the learned token-to-mel decoder, or the tokens'
centroids), and a vocoder (the model's neural one, or Griffin-Lim) turns those into
audio."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from modalities.audio.features import log_mel, save_audio, voice_prompt as load_voice_prompt
from modalities.audio.espeak import phonemes as phonemize
from modalities.audio.flow import FlowDecoder, tokens_to_audio
from modalities.audio.meldecoder import MelDecoder
from modalities.audio.vocoder import choose_vocoder, load_vocoder
from modalities.audio.tokenizer import SpeechTokenizer
from specgen import CachedLM, DraftConfig, Sampling, Stats, generate, make_drafter, tree_rule
from specgen.loading import check_vocabulary, load_lm_and_heads, part_path

from modalities.specials import EOS

from .vocab import SpeechVocab

PROMPT_SECONDS, MIN_PROMPT_SECONDS = 3.0, 1.0
DECODERS = ("auto", "flow", "net", "centroids")  # how tokens become mel frames (see SpeechPipeline.generate)


@dataclass
class SpeechResult:
    audio: np.ndarray  # [samples] float32 in [-1, 1]
    sample_rate: int
    stats: Stats  # of the token stage
    tokens: list[int]  # speech tokens, one per mel frame
    seconds_total: float = 0.0  # wall time of the whole call (tokens, flow matching, vocoder)

    def save(self, path: str):
        save_audio(path, self.audio, self.sample_rate)

    @property
    def real_time_factor(self) -> float:
        return self.seconds_total / max(len(self.audio) / self.sample_rate, 1e-9)


class SpeechPipeline:
    def __init__(self, lm, vocab: SpeechVocab, tokenizer: SpeechTokenizer, flow: FlowDecoder | None, heads=None,
                 default_prompt: str | None = None, vocoder=None, mel_decoder: MelDecoder | None = None):
        self.lm, self.vocab, self.tokenizer, self.flow = CachedLM(lm), vocab, tokenizer, flow
        self.mel_decoder = mel_decoder
        self.heads, self.default_prompt, self.vocoder = heads, default_prompt, vocoder
        self.sample_rate = tokenizer.cfg.sample_rate
        self._reader = None  # Piper's phonemizer, for an aligned vocabulary
        check_vocabulary(len(vocab), self.lm.vocab, "speech")

    @classmethod
    def from_pretrained(cls, path: str, device=None, dtype=None) -> "SpeechPipeline":
        """A folder with lm/ (+ speech_vocab.json), tokenizer/, optionally flow/, meldecoder/, heads/, vocoder/ and
        prompt.wav. Without flow/ the mel comes from the tokens alone (a one-voice model; the voice prompt is then not
        used): meldecoder/ when it is there, else the tokens' centroids."""
        lm, heads = load_lm_and_heads(path, device, dtype, what="speech LM", narrow=True)
        flow_path = part_path(path, "flow", required=False)  # none: the tokens' centroids make the mel
        flow = FlowDecoder.load(flow_path).to(lm.device) if flow_path else None
        net_path = part_path(path, "meldecoder", required=False)
        mel_decoder = MelDecoder.load(net_path).to(lm.device) if net_path else None
        prompt = os.path.join(path, "prompt.wav")
        vocab = SpeechVocab.load(os.path.join(path, "lm"))
        tokenizer = SpeechTokenizer.load(part_path(path, "tokenizer"))
        return cls(lm, vocab, tokenizer, flow, heads, prompt if os.path.isfile(prompt) else None,
                   load_vocoder(path, tokenizer.cfg, lm.device), mel_decoder)

    def phonemize(self, text: str):
        """espeak-ng's IPA string, or for an aligned vocabulary Piper's symbols (what its training data spoke)."""
        if not self.vocab.aligned:
            return phonemize(text)
        if self._reader is None:
            from modalities.audio.piper import PiperReader

            self._reader = PiperReader(alignments=False)
        return self._reader.symbols(text)

    def prompt(self, voice_prompt) -> np.ndarray:
        """The first 3 s of the voice prompt (a path, or 16 kHz samples); clear errors for unusable prompts."""
        if voice_prompt is None:
            if self.default_prompt is None:
                raise ValueError("no voice prompt given and this model ships none: pass voice_prompt='ref.wav'")
            voice_prompt = self.default_prompt
        return load_voice_prompt(voice_prompt, self.sample_rate, PROMPT_SECONDS, MIN_PROMPT_SECONDS)

    def generate(self, text: str, voice_prompt=None, method: str = "vadusa", tolerance: int = 3,
                 temperature: float | None = None, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 max_seconds: float = 20.0, flow_steps: int = 8, num_draft_tokens: int = 8,
                 acceptance: str | None = None, vocoder: str = "auto", decoder: str = "auto",
                 drafting: DraftConfig | None = None) -> SpeechResult:
        """Speak `text` in the prompt's voice. temperature None is the model's default (`temperature` in its
        speech_vocab.json, else 1). method: vadusa (heads + tolerance acceptance) or ar. tolerance 1 is
        exact matching; larger tolerances accept more and are lossy (reported in stats). acceptance="sample"
        decodes the heads with the exact sampling rule instead (lossless; the heads' guesses are then drawn from
        their distribution unless draws="top" in `drafting`). vocoder: auto (the model's neural vocoder when it
        ships one, else Griffin-Lim), neural or griffin-lim. decoder: auto (flow matching when the model ships a flow
        decoder, else its learned token-to-mel decoder, else the tokens' centroids), flow, net or centroids.
        drafting: how the heads draft (`DraftConfig`; its tree_size defaults to the heads' measured CPU size, 6 for
        the zoo model, else by device: 8 on CPU, 32 on CUDA)."""
        import time

        t0 = time.perf_counter()
        if temperature is None:  # the model's own (chosen on training sentences), else 1
            temperature = self.vocab.temperature if self.vocab.temperature is not None else 1.0
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the text is empty: give something to say")
        if method not in ("vadusa", "ar"):
            raise ValueError(f"unknown method {method!r}: choose 'vadusa' or 'ar'")
        if method == "vadusa" and self.heads is None:
            raise ValueError("this speech model ships no VADUSA heads: use method='ar' or train heads")
        voc = choose_vocoder(vocoder, self.vocoder)
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}: choose one of {', '.join(DECODERS)}")
        if decoder == "flow" and self.flow is None:
            raise ValueError("this speech model ships no flow decoder: use decoder='auto' (or 'net', 'centroids')")
        if decoder == "net" and self.mel_decoder is None:
            raise ValueError("this speech model ships no token-to-mel decoder (meldecoder/): use decoder='auto' "
                             "(or 'centroids')")
        flow = self.flow if decoder in ("auto", "flow") else None
        mel_decoder = self.mel_decoder if decoder in ("auto", "net") else None
        phoneme_ids = self.vocab.encode_phonemes(self.phonemize(text))
        if not phoneme_ids:
            raise ValueError(f"no speakable phonemes in {text!r}: give English words")
        prompt_mel, prompt_tokens = None, []
        if flow is not None or self.vocab.prompt_frames != 0:  # a one-voice LM decoded by centroids needs no prompt
            prompt_mel = log_mel(torch.from_numpy(self.prompt(voice_prompt)), self.tokenizer.cfg)
            prompt_tokens = self.tokenizer.encode_mel(prompt_mel).tolist()
        if self.vocab.prompt_frames is not None:  # the prompt length the LM was trained with (0: a one-voice LM)
            prompt_tokens = prompt_tokens[: self.vocab.prompt_frames]
        ids = self.vocab.prefix(phoneme_ids, prompt_tokens)
        sampling = Sampling(temperature, top_k, top_p)
        rule, options = acceptance, None
        if method == "vadusa" and acceptance is None:
            rule, options = "tolerance", {"tolerance": tolerance}
        drafter = None
        if method == "vadusa":  # Medusa or Hydra heads, the tree shaped for the rule in use
            drafter = make_drafter(self.heads.kind, self.heads, drafting, tree_rule(rule, temperature, options))
        gen = torch.Generator(self.lm.device).manual_seed(seed)
        budget = int(max_seconds * self.tokenizer.cfg.frames_per_second)
        if self.vocab.aligned:  # the interleaved symbols take room in the stream too
            budget += len(phoneme_ids)
        context = self.lm.context
        if context is not None:  # the speech must fit beside its prefix (and a round of drafts) in the context
            room = context - len(ids) - num_draft_tokens
            if room < self.tokenizer.cfg.frames_per_second:
                raise ValueError(f"the text is too long for this model ({len(ids)} prefix tokens of a {context}-token "
                                 f"context leave under 1 s of speech): split it into sentences")
            budget = min(budget, room)
        out = generate(self.lm, [ids], drafter, sampling, budget, num_draft_tokens, [EOS], None, gen, rule, options,
                       self.vocab.allowed, self.vocab.order(phoneme_ids))[0]
        tokens = self.vocab.speech_tokens(out.token_ids)
        if not tokens:
            raise ValueError("the speech LM stopped before saying anything: try another seed or a higher temperature")
        wave = tokens_to_audio(flow, self.tokenizer, tokens, prompt_mel, flow_steps, seed, voc, mel_decoder)
        peak = float(np.abs(wave).max()) or 1.0
        return SpeechResult(0.95 * wave / max(peak, 1.0), self.sample_rate, out.stats, tokens,
                            time.perf_counter() - t0)
