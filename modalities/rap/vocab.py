"""The rap LM's vocabulary and prefix: specials, phoneme symbols, accompaniment tokens, speech tokens;
`<s> lyric phonemes <sep> accompaniment <sep> voice-prompt speech tokens <sep>`, then vocal speech tokens
(Freestyler's conditioning: lyrics, accompaniment and a voice prompt, Ning et al. 2024).

An *aligned* vocabulary's stream also carries each lyric word's phonemes just before the vocal frame of the
word's slot on the beat grid (as the aligned speech stream carries Piper's symbols), so the LM sees which word
to say when it must say it; the decode puts them there (`specgen.constraints.SymbolOrder` with `at`)."""
from __future__ import annotations

from functools import lru_cache

import torch

from modalities.specials import BOS, SEP, SPECIALS, load_vocab, save_vocab

from .accompaniment import TOKENS as ACCOMPANIMENT_TOKENS

LINE = " | "  # between lyric lines in the phoneme string


@lru_cache(maxsize=None)
def word_phonemes(word: str) -> str:
    """espeak-ng's IPA for one word on its own (a line's IPA can run words together)."""
    from modalities.audio.espeak import phonemes

    return phonemes(word)


def word_slots(lines: list[str]) -> list[int]:
    """The eighth note each word starts on: line i fills bar i + 1 (bar 0 is the intro), its n words spread over
    the bar's 8 eighths. The RapBank places its vocals so, and the aligned decode puts each word's phonemes there."""
    return [8 * (1 + i) + round(j * 8 / len(line.split())) for i, line in enumerate(lines)
            for j in range(len(line.split()))]


class RapVocab:
    def __init__(self, phonemes: list[str], speech_size: int, aligned: bool = False):
        self.phonemes, self.speech_size, self.aligned = list(phonemes), speech_size, aligned
        self.phoneme_id = {p: len(SPECIALS) + i for i, p in enumerate(self.phonemes)}
        self.accompaniment_offset = len(SPECIALS) + len(self.phonemes)
        self.speech_offset = self.accompaniment_offset + ACCOMPANIMENT_TOKENS

    def __len__(self) -> int:
        return self.speech_offset + self.speech_size

    @classmethod
    def from_texts(cls, phoneme_strings, speech_size: int, aligned: bool = False) -> "RapVocab":
        return cls(sorted({ch for s in phoneme_strings for ch in s} | set(LINE)), speech_size, aligned)

    def encode_phonemes(self, phonemes: str) -> list[int]:
        return [self.phoneme_id[ch] for ch in phonemes if ch in self.phoneme_id]

    def prefix(self, lyric_phonemes: str, accompaniment: list[int], prompt_tokens) -> list[int]:
        return [BOS, *self.encode_phonemes(lyric_phonemes), SEP,
                *(self.accompaniment_offset + a for a in accompaniment), SEP,
                *(self.speech_offset + int(t) for t in prompt_tokens), SEP]

    def word_ids(self, lines: list[str]) -> list[list[int]]:
        """Each lyric word's phoneme ids, in order."""
        return [self.encode_phonemes(word_phonemes(w)) for line in lines for w in line.split()]

    def interleave(self, speech_ids: list[int], words: list[list[int]], frames: list[int]) -> list[int]:
        """The aligned stream: word i's phoneme ids just before vocal frame `frames[i]`."""
        out, done = [], 0
        for ids, frame in zip(words, frames):
            frame = min(max(frame, done), len(speech_ids))
            out += speech_ids[done:frame] + ids
            done = frame
        return out + speech_ids[done:]

    def order(self, words: list[list[int]], frames: list[int]):
        """The decode's constraint for an aligned vocabulary: word i's phonemes come exactly after `frames[i]`
        vocal tokens, and only then."""
        from specgen.constraints import SymbolOrder

        seq = [i for ids in words for i in ids]
        at = [f for ids, f in zip(words, frames) for _ in ids]
        return SymbolOrder([seq], self.phoneme_mask(), (), at=[at])

    def phoneme_mask(self) -> torch.Tensor:
        """[vocab] bool: the lyric phoneme ids (and the line mark)."""
        mask = torch.zeros(len(self), dtype=torch.bool)
        mask[len(SPECIALS) : self.accompaniment_offset] = True
        return mask

    def speech_ids(self, tokens) -> list[int]:
        return [self.speech_offset + int(t) for t in tokens]

    def speech_tokens(self, ids) -> list[int]:
        return [i - self.speech_offset for i in ids if i >= self.speech_offset]

    @property
    def allowed(self) -> torch.Tensor:
        """Vocals last as long as the beat, so only speech tokens may follow the prefix (no early `</s>`)."""
        mask = self.phoneme_mask() if self.aligned else torch.zeros(len(self), dtype=torch.bool)
        mask[self.speech_offset :] = True  # (aligned: the words' phonemes too, which the constraint places)
        return mask

    def save(self, path: str):
        save_vocab(path, "rap_vocab.json", {"phonemes": self.phonemes, "speech_size": self.speech_size,
                                            "accompaniment_tokens": ACCOMPANIMENT_TOKENS,
                                            "aligned": self.aligned})

    @classmethod
    def load(cls, path: str) -> "RapVocab":
        d = load_vocab(path, "rap_vocab.json")
        return cls(d["phonemes"], d["speech_size"], bool(d.get("aligned", False)))
