"""ImagePipeline: a caption in, an image out. The caption prefix conditions an image LM that writes a 16x16
raster of VQ codes with classifier-free guidance (conditioned and unconditioned rows in one batch, guided
logits for sampling and acceptance), decoded speculatively with Hawk heads; the VQ decoder paints the pixels."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from modalities.image.vq import ImageTokenizer
from specgen import CachedLM, DraftConfig, Sampling, Stats, generate, make_drafter, tree_rule
from specgen.guidance import GuidedLM
from specgen.loading import check_vocabulary, load_lm_and_heads

from .vocab import ImageVocab

GRID = 16  # codes per side


@dataclass
class ImageResult:
    images: list[Image.Image]
    stats: Stats
    tokens: list[list[int]]

    @property
    def image(self) -> Image.Image:
        return self.images[0]

    def grid(self) -> Image.Image:
        """All samples side by side."""
        w, h = self.images[0].size
        out = Image.new("RGB", (w * len(self.images), h))
        for i, im in enumerate(self.images):
            out.paste(im, (i * w, 0))
        return out

    def save(self, path: str):
        tmp = f"{path}.tmp{os.getpid()}.png"
        self.grid().save(tmp)
        os.replace(tmp, path)


def codebook_neighbours(codebook: torch.Tensor, vocab: ImageVocab, k: int = 8) -> torch.Tensor:
    """For every LM id, the LM ids of its k nearest codes in latent space (-1 for ids that are not codes)."""
    d = torch.cdist(codebook.float(), codebook.float())
    d.fill_diagonal_(float("inf"))
    near = d.topk(k, largest=False).indices + vocab.code_offset  # [codes, k]
    out = torch.full((len(vocab), k), -1, dtype=torch.long)
    out[vocab.code_offset :] = near
    return out


class ImagePipeline:
    def __init__(self, lm, vocab: ImageVocab, tokenizer: ImageTokenizer, heads=None):
        self.lm, self.vocab, self.tokenizer, self.heads = CachedLM(lm), vocab, tokenizer, heads
        check_vocabulary(len(vocab), self.lm.vocab, "image")

    @classmethod
    def from_pretrained(cls, path: str, device=None, dtype=None, heads: str | None = None) -> "ImagePipeline":
        """A folder with lm/ (+ image_vocab.json), vq/ and optionally heads/ (Hawk); `heads`: another Hawk heads
        folder trained on this LM (the zoo model also ships `heads-medusa/`)."""
        lm, heads = load_lm_and_heads(path, device, dtype, what="image LM", heads=heads, narrow=True)
        tokenizer = ImageTokenizer.load(os.path.join(path, "vq"))
        return cls(lm, ImageVocab.load(os.path.join(path, "lm")), tokenizer, heads)

    def generate(self, prompt: str, cfg_scale: float = 3.0, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, method: str = "hawk", seed: int = 0, samples: int = 1,
                 num_draft_tokens: int = GRID, acceptance: str | None = None, delta: float = 0.2,
                 drafting: DraftConfig | None = None) -> ImageResult:
        """`samples` images for one caption. method: hawk or ar; acceptance: None (exact: greedy or sample) or
        "relaxed" (LANTERN, lossy, codebook neighbours within `delta`); num_draft_tokens: the deepest a tree may
        reach (default one image row, as deep as Hawk's cached and drawn vertical guesses go); drafting: how Hawk
        drafts (`DraftConfig`): vertical=False drafts with the horizontal heads only; tree_size defaults to the
        heads' measured CPU size, else by device (8 on CPU, 32 on CUDA); draws 'top' keeps Hawk's tree, 'sample'
        draws the horizontal guesses from the heads when sampling exactly, with the vertical guesses only as a run
        drawn below the drawn chain where the calibrated rates give it nodes (none at the CPU size; see
        `HawkDrafter`), and 'auto' draws when sampling with exact acceptance (the fastest exact setting measured on
        the CPU), else keeps Hawk's tree."""
        if method not in ("hawk", "ar"):
            raise ValueError(f"unknown method {method!r}: choose 'hawk' or 'ar'")
        if method == "hawk" and self.heads is None:
            raise ValueError("this image model ships no Hawk heads: use method='ar'")
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        prefix = self.vocab.prefix(prompt)
        target = GuidedLM(self.lm, cfg_scale, self.vocab.unconditional) if cfg_scale != 1.0 else self.lm
        options = None
        if acceptance == "relaxed":
            options = {"neighbours": codebook_neighbours(self.tokenizer.codebook.detach().cpu(), self.vocab),
                       "delta": delta}
        drafter = None
        if method == "hawk":
            drafter = make_drafter("hawk", self.heads, drafting, tree_rule(acceptance, temperature, options))
        gen = torch.Generator(self.lm.device).manual_seed(seed)
        outs = generate(target, [prefix] * samples, drafter, Sampling(temperature, top_k, top_p), GRID * GRID,
                        num_draft_tokens, (), None, gen, acceptance, options, self.vocab.allowed)
        codes = [[t - self.vocab.code_offset for t in o.token_ids] for o in outs]
        pixels = self.tokenizer.decode(torch.tensor(codes).view(samples, GRID, GRID).to(self.tokenizer.codebook.device))
        return ImageResult([Image.fromarray(np.asarray(p)) for p in pixels], outs[0].stats, codes)
