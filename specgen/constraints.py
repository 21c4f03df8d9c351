"""Constraints on what the target may say next that depend on what it has said: a bool block over the vocabulary for
every node of a verification tree, applied (as -inf) before any processing, in `ar` and every speculative method
alike, so the output of a constrained speculative decode still equals the constrained `ar` decode."""
from __future__ import annotations

import torch

from .tree import ancestry


class SymbolOrder:
    """Each row says its own list of symbols in order, with any number of other tokens between them, and may end
    (EOS) only after its last symbol. The aligned speech and rap streams use it: a phoneme or word token comes just
    before the audio it covers, so the LM chooses *when* the next symbol comes, never *which* one, and cannot skip,
    repeat or reorder the text.

    `symbols` [vocab] bool marks the symbol ids; `sequences[row]` is that row's symbols, in order; `eos` the ids
    that end a row."""

    def __init__(self, sequences: list[list[int]], symbols: torch.Tensor, eos=()):
        if not sequences:
            raise ValueError("SymbolOrder needs one symbol list per row")
        self.symbols = symbols.bool()
        vocab = self.symbols.numel()
        for seq in sequences:
            bad = [s for s in seq if not (0 <= s < vocab and bool(self.symbols[s]))]
            if bad:
                raise ValueError(f"SymbolOrder: ids {bad[:5]} are not symbols of this vocabulary")
        self.eos = sorted(set(eos))
        self.lengths = torch.tensor([len(s) for s in sequences])
        width = max(1, int(self.lengths.max()))
        self.padded = torch.tensor([list(s) + [0] * (width - len(s)) for s in sequences], dtype=torch.long)
        self._counted = [(0, 0)] * len(sequences)  # per row: (tokens counted, symbols among them)

    def said(self, row: int, emitted: list[int]) -> int:
        """How many of `row`'s symbols `emitted` (the row's output so far) holds; counted incrementally."""
        seen, count = self._counted[row]
        if seen > len(emitted):  # the output was cut back (a stop string): count again
            seen, count = 0, 0
        sym = self.symbols
        count += sum(1 for t in emitted[seen:] if 0 <= t < sym.numel() and bool(sym[t]))
        self._counted[row] = (len(emitted), count)
        return count

    def block(self, rows: list[int], emitted: list[list[int]], tokens: torch.Tensor | None = None,
              parents: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, nodes, vocab] bool, True where barred. `rows[b]` is batch row b's index into `sequences` and
        `emitted[b]` its output so far (ending with the tree's root, `tokens[:, 0]`, when a tree is given). Without a
        tree, one node: what may come right after `emitted`."""
        device = self.symbols.device if tokens is None else tokens.device
        base = torch.tensor([self.said(r, e) for r, e in zip(rows, emitted)], device=device)
        if tokens is None:
            count = base[:, None]
        else:  # symbols on each node's path, the root excepted (it is already in `emitted`)
            sym = self.symbols.to(device)
            is_sym = sym[tokens.clamp(0, sym.numel() - 1)] & (tokens < sym.numel())
            is_sym[:, 0] = False
            anc, _ = ancestry(parents, valid)
            count = base[:, None] + (anc.float() @ is_sym.float()[..., None])[..., 0].long()
        idx = torch.tensor(rows, device=device)
        length = self.lengths.to(device)[idx][:, None]  # [batch, 1]
        nxt = self.padded.to(device)[idx].gather(1, count.clamp(max=self.padded.shape[1] - 1))  # [batch, nodes]
        block = self.symbols.to(device).expand(*count.shape, -1).clone()
        open_ = count < length  # a symbol is still due: it may come next
        block.scatter_(2, nxt[..., None], ~open_[..., None])
        if self.eos:
            block[..., self.eos] = open_[..., None]  # no end before the last symbol
        return block
