"""The speech LM's one vocabulary: special tokens, phoneme symbols, then speech tokens; and the prefix layout
`<s> phonemes <sep> voice-prompt speech tokens <sep>` after which the LM continues with speech tokens and `</s>`
(VALL-E style continuation, Wang et al. 2023)."""
from __future__ import annotations


from modalities.specials import BOS, EOS, SEP, SPECIALS, load_vocab, save_vocab


class SpeechVocab:
    def __init__(self, phonemes: list[str], speech_size: int):
        self.phonemes = list(phonemes)
        self.speech_size = speech_size
        self.phoneme_id = {p: len(SPECIALS) + i for i, p in enumerate(self.phonemes)}
        self.speech_offset = len(SPECIALS) + len(self.phonemes)

    def __len__(self) -> int:
        return self.speech_offset + self.speech_size

    @classmethod
    def from_texts(cls, phoneme_strings, speech_size: int) -> "SpeechVocab":
        """Every character seen in the phoneme strings is a symbol (IPA letters, stress marks, space)."""
        return cls(sorted({ch for s in phoneme_strings for ch in s}), speech_size)

    def encode_phonemes(self, phonemes: str) -> list[int]:
        """Symbols the vocabulary lacks are dropped (rare IPA marks); an empty result is the caller's error."""
        return [self.phoneme_id[ch] for ch in phonemes if ch in self.phoneme_id]

    def speech_ids(self, tokens) -> list[int]:
        return [self.speech_offset + int(t) for t in tokens]

    def speech_tokens(self, ids) -> list[int]:
        return [i - self.speech_offset for i in ids if i >= self.speech_offset]

    def prefix(self, phoneme_ids: list[int], prompt_tokens) -> list[int]:
        return [BOS, *phoneme_ids, SEP, *self.speech_ids(prompt_tokens), SEP]

    @property
    def allowed(self):
        """What the LM may say after the prefix: speech tokens and EOS (a bool mask over the vocabulary)."""
        import torch

        mask = torch.zeros(len(self), dtype=torch.bool)
        mask[self.speech_offset:] = True
        mask[EOS] = True
        return mask

    def save(self, path: str):
        save_vocab(path, "speech_vocab.json", {"phonemes": self.phonemes, "speech_size": self.speech_size})

    @classmethod
    def load(cls, path: str) -> "SpeechVocab":
        d = load_vocab(path, "speech_vocab.json")
        return cls(d["phonemes"], d["speech_size"])
