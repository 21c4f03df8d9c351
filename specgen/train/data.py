"""Token files (flat arrays, documents separated by EOS: uint16, or uint32 for a `.u32` file) sampled as random
windows from a weighted mix."""
from __future__ import annotations

import os

import numpy as np
import torch


def parse_mix(spec: str) -> list[tuple[str, float]]:
    """'a.bin:0.5,b.bin:0.5' -> [(path, weight)]; a missing weight is 1."""
    mix = []
    for part in spec.split(","):
        path, _, w = part.partition(":")
        if not os.path.isfile(path):
            raise ValueError(f"token file {path!r} does not exist: build it first (see the README's training "
                             f"section)")
        mix.append((path, float(w) if w else 1.0))
    return mix


class TokenMix:
    """Random windows of `length` tokens; window i of a given seed is always the same (resumable runs)."""

    def __init__(self, spec: str, length: int, seed: int = 0):
        self.mix = parse_mix(spec)
        self.arrays = [np.memmap(p, dtype=np.uint32 if p.endswith(".u32") else np.uint16, mode="r")
                       for p, _ in self.mix]
        for (p, _), a in zip(self.mix, self.arrays):
            if len(a) <= length + 1:
                raise ValueError(f"{p} has {len(a)} tokens, fewer than one window of {length + 1}")
        w = np.array([w for _, w in self.mix], dtype=np.float64)
        self.weights = w / w.sum()
        self.length, self.seed = length, seed

    def batch(self, step: int, size: int, seed: int | None = None) -> torch.Tensor:
        """Windows [size, length] for this step (another seed gives held-apart windows, e.g. for evaluation)."""
        rng = np.random.default_rng([self.seed if seed is None else seed, step])
        src = rng.choice(len(self.arrays), size=size, p=self.weights)
        rows = []
        for s in src:
            a = self.arrays[s]
            start = rng.integers(0, len(a) - self.length)
            rows.append(np.asarray(a[start : start + self.length], dtype=np.int64))
        return torch.from_numpy(np.stack(rows))


class SequenceSet:
    """Whole sequences (a saved list of {"ids": [...], "loss_from": i}) batched with right padding; labels are -100
    before `loss_from` (the conditioning prefix) and on padding. Batch i of a seed is always the same."""

    def __init__(self, path: str, seed: int = 0, pad_id: int = 0):
        if not os.path.isfile(path):
            raise ValueError(f"sequence file {path!r} does not exist: build it first")
        self.items = torch.load(path)
        if not self.items:
            raise ValueError(f"{path} holds no sequences")
        self.seed, self.pad_id = seed, pad_id
        self.length = max(len(x["ids"]) for x in self.items)

    def batch(self, step: int, size: int, seed: int | None = None):
        """inputs [size, L], labels [size, L], attention mask [size, L]."""
        rng = np.random.default_rng([self.seed if seed is None else seed, step])
        picks = [self.items[i] for i in rng.integers(0, len(self.items), size)]
        width = max(len(x["ids"]) for x in picks)
        inputs = torch.full((size, width), self.pad_id, dtype=torch.long)
        labels = torch.full((size, width), -100, dtype=torch.long)
        mask = torch.zeros(size, width, dtype=torch.long)
        for r, x in enumerate(picks):
            n = len(x["ids"])
            inputs[r, :n] = torch.tensor(x["ids"])
            labels[r, x["loss_from"]:n] = inputs[r, x["loss_from"]:n]
            mask[r, :n] = 1
        return inputs, labels, mask
