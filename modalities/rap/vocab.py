"""The rap LM's vocabulary and prefix: specials, phoneme symbols, accompaniment tokens, speech tokens;
`<s> lyric phonemes <sep> accompaniment <sep> voice-prompt speech tokens <sep>`, then vocal speech tokens
(Freestyler's conditioning: lyrics, accompaniment and a voice prompt, Ning et al. 2024)."""
from __future__ import annotations


import torch

from modalities.specials import BOS, SEP, SPECIALS, load_vocab, save_vocab

from .accompaniment import TOKENS as ACCOMPANIMENT_TOKENS

LINE = " | "  # between lyric lines in the phoneme string


class RapVocab:
    def __init__(self, phonemes: list[str], speech_size: int):
        self.phonemes, self.speech_size = list(phonemes), speech_size
        self.phoneme_id = {p: len(SPECIALS) + i for i, p in enumerate(self.phonemes)}
        self.accompaniment_offset = len(SPECIALS) + len(self.phonemes)
        self.speech_offset = self.accompaniment_offset + ACCOMPANIMENT_TOKENS

    def __len__(self) -> int:
        return self.speech_offset + self.speech_size

    @classmethod
    def from_texts(cls, phoneme_strings, speech_size: int) -> "RapVocab":
        return cls(sorted({ch for s in phoneme_strings for ch in s} | set(LINE)), speech_size)

    def encode_phonemes(self, phonemes: str) -> list[int]:
        return [self.phoneme_id[ch] for ch in phonemes if ch in self.phoneme_id]

    def prefix(self, lyric_phonemes: str, accompaniment: list[int], prompt_tokens) -> list[int]:
        return [BOS, *self.encode_phonemes(lyric_phonemes), SEP,
                *(self.accompaniment_offset + a for a in accompaniment), SEP,
                *(self.speech_offset + int(t) for t in prompt_tokens), SEP]

    def speech_ids(self, tokens) -> list[int]:
        return [self.speech_offset + int(t) for t in tokens]

    def speech_tokens(self, ids) -> list[int]:
        return [i - self.speech_offset for i in ids if i >= self.speech_offset]

    @property
    def allowed(self) -> torch.Tensor:
        """Vocals last as long as the beat, so only speech tokens may follow the prefix (no early `</s>`)."""
        mask = torch.zeros(len(self), dtype=torch.bool)
        mask[self.speech_offset :] = True
        return mask

    def save(self, path: str):
        save_vocab(path, "rap_vocab.json", {"phonemes": self.phonemes, "speech_size": self.speech_size,
                                            "accompaniment_tokens": ACCOMPANIMENT_TOKENS})

    @classmethod
    def load(cls, path: str) -> "RapVocab":
        d = load_vocab(path, "rap_vocab.json")
        return cls(d["phonemes"], d["speech_size"])
