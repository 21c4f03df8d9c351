"""The image LM's vocabulary: special tokens, caption words, then VQ codes; prefix `<s> words <sep>`, after which
the LM writes the 16x16 raster of codes row by row. `<null>` stands for "no caption" (trained by caption
dropout, used for classifier-free guidance)."""
from __future__ import annotations

import torch

from modalities.specials import load_vocab, save_vocab

from .scenes import COLORS, RELATIONS, SHAPES, SIZES

SPECIALS = ["<pad>", "<s>", "</s>", "<sep>", "<mask>", "<null>"]
PAD, BOS, EOS, SEP, MASK, NULL = range(len(SPECIALS))
WORDS = sorted({"a", *SIZES, *COLORS, *SHAPES, *(w for r in RELATIONS for w in r.split())})


class ImageVocab:
    def __init__(self, codes: int, words: list[str] = WORDS):
        self.words, self.codes = list(words), codes
        self.word_id = {w: len(SPECIALS) + i for i, w in enumerate(self.words)}
        self.code_offset = len(SPECIALS) + len(self.words)

    def __len__(self) -> int:
        return self.code_offset + self.codes

    def encode_caption(self, caption: str) -> list[int]:
        words = caption.lower().replace(",", " ").split()
        unknown = [w for w in words if w not in self.word_id]
        if not words:
            raise ValueError("the prompt is empty: describe a scene, e.g. 'a red circle left of a blue square'")
        if unknown:
            raise ValueError(f"this model does not know the word(s) {unknown}: it knows {', '.join(self.words)}")
        return [self.word_id[w] for w in words]

    def prefix(self, caption: str | None) -> list[int]:
        """`<s> words <sep>`, or `<s> <null> <sep>` without a caption."""
        return [BOS, *(self.encode_caption(caption) if caption is not None else [NULL]), SEP]

    def unconditional(self, prefix: list[int]) -> list[int]:
        return self.prefix(None)

    def code_ids(self, codes) -> list[int]:
        return [self.code_offset + int(c) for c in codes]

    @property
    def allowed(self) -> torch.Tensor:
        mask = torch.zeros(len(self), dtype=torch.bool)
        mask[self.code_offset :] = True
        return mask

    def save(self, path: str):
        save_vocab(path, "image_vocab.json", {"words": self.words, "codes": self.codes}, SPECIALS)

    @classmethod
    def load(cls, path: str) -> "ImageVocab":
        d = load_vocab(path, "image_vocab.json")
        return cls(d["codes"], d["words"])
