"""The speech LM's one vocabulary: special tokens, phoneme symbols, then speech tokens; and the prefix layout
`<s> phonemes <sep> voice-prompt speech tokens <sep>` after which the LM continues with speech tokens and `</s>`
(VALL-E style continuation, Wang et al. 2023).

An `aligned` vocabulary (ELLA-V style, `modalities.speech.align`) holds Piper's symbols, one per code point as
Piper speaks them, and the LM's continuation interleaves them with the speech tokens: each symbol just before the
frames it covers. `prompt_frames` 0 is a one-voice model whose prefix carries no voice prompt,
`<s> symbols <sep> <sep>`."""
from __future__ import annotations


from modalities.specials import BOS, EOS, SEP, SPECIALS, load_vocab, save_vocab


class SpeechVocab:
    def __init__(self, phonemes: list[str], speech_size: int, aligned: bool = False, prompt_frames: int | None = None,
                 max_run: dict | None = None, temperature: float | None = None):
        self.phonemes = list(phonemes)
        self.speech_size = speech_size
        self.aligned, self.prompt_frames = aligned, prompt_frames  # prompt_frames None: the pipeline's default
        self.max_run = max_run  # aligned: {symbol: the most speech tokens after it in the training data}
        self.temperature = temperature  # the sampling temperature the pipeline uses unless told
        self.phoneme_id = {p: len(SPECIALS) + i for i, p in enumerate(self.phonemes)}
        self.speech_offset = len(SPECIALS) + len(self.phonemes)

    def __len__(self) -> int:
        return self.speech_offset + self.speech_size

    @classmethod
    def from_texts(cls, phoneme_strings, speech_size: int) -> "SpeechVocab":
        """Every character seen in the phoneme strings is a symbol (IPA letters, stress marks, space)."""
        return cls(sorted({ch for s in phoneme_strings for ch in s}), speech_size)

    @classmethod
    def from_symbols(cls, symbol_lists, speech_size: int, prompt_frames: int = 0) -> "SpeechVocab":
        """An aligned vocabulary over every symbol seen (Piper's, `modalities.audio.piper`)."""
        return cls(sorted({s for syms in symbol_lists for s in syms}), speech_size, True, prompt_frames)

    def encode_phonemes(self, phonemes) -> list[int]:
        """Symbols the vocabulary lacks are dropped (rare IPA marks); an empty result is the caller's error.
        `phonemes` is a string (one symbol per character) or, for an aligned vocabulary, a list of symbols."""
        return [self.phoneme_id[ch] for ch in phonemes if ch in self.phoneme_id]

    def is_symbol(self, i: int) -> bool:
        return len(SPECIALS) <= i < self.speech_offset

    def symbol(self, i: int) -> str:
        return self.phonemes[i - len(SPECIALS)]

    def speech_ids(self, tokens) -> list[int]:
        return [self.speech_offset + int(t) for t in tokens]

    def speech_tokens(self, ids) -> list[int]:
        return [i - self.speech_offset for i in ids if i >= self.speech_offset]

    def prefix(self, phoneme_ids: list[int], prompt_tokens) -> list[int]:
        return [BOS, *phoneme_ids, SEP, *self.speech_ids(prompt_tokens), SEP]

    @property
    def allowed(self):
        """What the LM may say after the prefix: speech tokens and EOS, and in an aligned vocabulary the symbols
        too (a bool mask over the vocabulary)."""
        import torch

        mask = torch.zeros(len(self), dtype=torch.bool)
        mask[(len(SPECIALS) if self.aligned else self.speech_offset):] = True
        mask[EOS] = True
        return mask

    def order(self, phoneme_ids: list[int]):
        """For an aligned vocabulary, the constraint that the LM says `phoneme_ids` in order, ends only after the
        last, and holds no symbol longer than the training data did (`specgen.constraints.SymbolOrder`); None
        otherwise."""
        if not self.aligned:
            return None
        import torch

        from specgen.constraints import SymbolOrder

        symbols = torch.zeros(len(self), dtype=torch.bool)
        symbols[len(SPECIALS):self.speech_offset] = True
        caps = None
        if self.max_run:  # symbols never seen with frames after them keep the largest cap
            caps = torch.full((len(self),), max(self.max_run.values()), dtype=torch.long)
            for sym, n in self.max_run.items():
                if sym in self.phoneme_id:
                    caps[self.phoneme_id[sym]] = max(1, n)
        return SymbolOrder([phoneme_ids], symbols, [EOS], caps)

    def save(self, path: str):
        extra = {"aligned": True, "prompt_frames": self.prompt_frames, "max_run": self.max_run} if self.aligned else {}
        if self.temperature is not None:
            extra["temperature"] = self.temperature
        save_vocab(path, "speech_vocab.json", {"phonemes": self.phonemes, "speech_size": self.speech_size, **extra})

    @classmethod
    def load(cls, path: str) -> "SpeechVocab":
        d = load_vocab(path, "speech_vocab.json")
        return cls(d["phonemes"], d["speech_size"], d.get("aligned", False), d.get("prompt_frames"), d.get("max_run"),
                   d.get("temperature"))
