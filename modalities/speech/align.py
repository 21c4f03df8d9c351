"""An explicit text-to-speech alignment for the speech LM (ELLA-V style, Song et al. 2024): each phoneme symbol
stands in the token stream just before the speech tokens (mel frames) it covers, so the LM says where it is in
the text at every step instead of having to learn the alignment from data.

`frame_bounds` turns the symbols' durations into frame boundaries; `interleave` and `deinterleave` go between a
symbol list plus frame tokens and the interleaved stream, in any id space (the caller says which ids are
symbols)."""
from __future__ import annotations

import numpy as np


def frame_bounds(seconds, frames: int, frames_per_second: float) -> list[int]:
    """Symbol j covers frames [bounds[j-1], bounds[j]) (bounds[-1] is `frames`): each symbol's end time rounded to
    the nearest frame, cumulatively, so rounding never drifts; a symbol shorter than half a frame may cover none."""
    if frames < 0 or frames_per_second <= 0:
        raise ValueError("frames must be >= 0 and frames_per_second > 0")
    ends = np.rint(np.cumsum(np.asarray(seconds, dtype=np.float64)) * frames_per_second).astype(np.int64)
    bounds = np.clip(ends, 0, frames)
    if len(bounds):
        bounds[-1] = frames  # the mel's last frame (centred STFT: one more than the length over the hop) is covered
    return bounds.tolist()


def interleave(symbol_ids: list[int], bounds: list[int], frame_ids: list[int]) -> list[int]:
    """[s_1, frames of s_1, s_2, frames of s_2, ...]."""
    if len(symbol_ids) != len(bounds):
        raise ValueError(f"{len(symbol_ids)} symbols but {len(bounds)} bounds")
    if bounds and bounds[-1] != len(frame_ids):
        raise ValueError(f"the bounds cover {bounds[-1]} frames, the clip has {len(frame_ids)}")
    out, start = [], 0
    for sym, end in zip(symbol_ids, bounds):
        if end < start:
            raise ValueError("bounds must not decrease")
        out.append(sym)
        out += frame_ids[start:end]
        start = end
    return out


def deinterleave(ids, is_symbol) -> tuple[list[int], list[int], list[int]]:
    """An interleaved stream -> (frame ids, symbol ids in order, for each frame the index of the symbol it
    follows, -1 for frames before any symbol). `is_symbol(id)` says which ids are symbols; other ids are frames."""
    frames, symbols, owner = [], [], []
    for i in ids:
        i = int(i)
        if is_symbol(i):
            symbols.append(i)
        else:
            frames.append(i)
            owner.append(len(symbols) - 1)
    return frames, symbols, owner
