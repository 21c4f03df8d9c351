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
    that end a row. `max_run` (optional) caps the other tokens in a row after a symbol: past it only the next
    symbol (or, after the last, EOS) may come, so a decode cannot linger on one sound. It is one number, or a
    [vocab] tensor with a cap per symbol id (the aligned speech model stores the longest run after each symbol in
    its training data); before the first symbol the largest cap holds.

    `at` (optional) fixes *when* too: `at[row][i]` is how many other tokens the row says before its symbol i, and
    the symbol comes exactly then, forced, and never earlier. The aligned rap stream uses it: each lyric word's
    phonemes come at the frame of the word's slot on the beat grid."""

    def __init__(self, sequences: list[list[int]], symbols: torch.Tensor, eos=(),
                 max_run: int | torch.Tensor | None = None, at: list[list[int]] | None = None):
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
        self.at = None
        if at is not None:
            if max_run is not None:
                raise ValueError("SymbolOrder: give `at` (when each symbol comes) or `max_run`, not both")
            if len(at) != len(sequences) or any(len(a) != len(s) or any(y < x for x, y in zip(a, a[1:])) or
                                                 (a and a[0] < 0) for a, s in zip(at, sequences)):
                raise ValueError("SymbolOrder: `at` needs one non-decreasing count >= 0 per symbol of every row")
            self.at = torch.tensor([list(a) + [0] * (width - len(a)) for a in at], dtype=torch.long)
        self.caps = None  # [vocab + 1]: the cap after each id, the last entry before any symbol
        if max_run is not None:
            caps = torch.as_tensor(max_run, dtype=torch.long).flatten()
            caps = caps.expand(vocab).clone() if caps.numel() == 1 else caps
            if caps.numel() != vocab or int(caps[self.symbols].min()) < 1:
                raise ValueError(f"SymbolOrder: max_run must be one number >= 1 or one per id of the {vocab}-id "
                                 f"vocabulary (>= 1 for every symbol)")
            self.caps = torch.cat([caps, caps[self.symbols].max()[None]])
        self._counted = [(0, 0, 0, vocab)] * len(sequences)  # per row: tokens counted, symbols, run, last symbol

    def said(self, row: int, emitted: list[int]) -> tuple[int, int, int]:
        """How many of `row`'s symbols `emitted` (the row's output so far) holds, how many other tokens follow its
        last symbol, and that symbol (the vocabulary size before any); counted incrementally."""
        seen, count, run, last = self._counted[row]
        if seen > len(emitted):  # the output was cut back (a stop string): count again
            seen, count, run, last = 0, 0, 0, self.symbols.numel()
        sym = self.symbols
        for t in emitted[seen:]:
            if 0 <= t < sym.numel() and bool(sym[t]):
                count, run, last = count + 1, 0, t
            else:
                run += 1
        self._counted[row] = (len(emitted), count, run, last)
        return count, run, last

    def block(self, rows: list[int], emitted: list[list[int]], tokens: torch.Tensor | None = None,
              parents: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, nodes, vocab] bool, True where barred. `rows[b]` is batch row b's index into `sequences` and
        `emitted[b]` its output so far (ending with the tree's root, `tokens[:, 0]`, when a tree is given). Without a
        tree, one node: what may come right after `emitted`."""
        device = self.symbols.device if tokens is None else tokens.device
        base, base_run, base_last = torch.tensor([self.said(r, e) for r, e in zip(rows, emitted)], device=device).T
        if tokens is None:
            count, run, last = base[:, None], base_run[:, None], base_last[:, None]
            other = torch.tensor([len(e) for e in emitted], device=device)[:, None] - count
        else:  # symbols on each node's path, the root excepted (it is already in `emitted`)
            sym = self.symbols.to(device)
            is_sym = sym[tokens.clamp(0, sym.numel() - 1)] & (tokens < sym.numel())
            is_sym[:, 0] = False
            anc, _ = ancestry(parents, valid)
            count = base[:, None] + (anc.float() @ is_sym.float()[..., None])[..., 0].long()
            run = base_run[:, None].repeat(1, tokens.shape[1])  # other tokens since the path's last symbol
            last = base_last[:, None].repeat(1, tokens.shape[1])  # and that symbol
            other = torch.tensor([len(e) for e in emitted], device=device)[:, None] - base[:, None]
            other = other.repeat(1, tokens.shape[1])  # other tokens on the whole path (with the row's output)
            par = parents.clamp(min=0)
            for i in range(1, tokens.shape[1]):  # parents come before their children
                up = run.gather(1, par[:, i : i + 1])[:, 0] + 1
                run[:, i] = torch.where(is_sym[:, i], torch.zeros_like(up), up)
                up = other.gather(1, par[:, i : i + 1])[:, 0]
                other[:, i] = torch.where(is_sym[:, i], up, up + 1)
                last[:, i] = torch.where(is_sym[:, i], tokens[:, i], last.gather(1, par[:, i : i + 1])[:, 0])
        idx = torch.tensor(rows, device=device)
        length = self.lengths.to(device)[idx][:, None]  # [batch, 1]
        nxt = self.padded.to(device)[idx].gather(1, count.clamp(max=self.padded.shape[1] - 1))  # [batch, nodes]
        block = self.symbols.to(device).expand(*count.shape, -1).clone()
        if self.caps is not None:  # a long enough run: nothing but the next symbol or the end
            block |= (run >= self.caps.to(device)[last])[..., None]
        pending = count < length  # a symbol is still due
        open_ = pending  # and it may come next
        if self.at is not None:  # its time fixed: before it, it may not come; at it, nothing else may
            due = self.at.to(device)[idx].gather(1, count.clamp(max=self.padded.shape[1] - 1))
            open_ = pending & (other >= due)
            block |= open_[..., None]
        block.scatter_(2, nxt[..., None], ~open_[..., None])
        if self.eos:
            block[..., self.eos] = pending[..., None]  # no end before the last symbol
        return block
