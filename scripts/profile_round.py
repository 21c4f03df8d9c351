"""Where a decode round's time goes, for the rap model: milliseconds per round by phase (draft, verify, loop) from
a plain run, then the tensor operations per round by phase, counted in a second run of the same song. On a CPU
a small op costs microseconds whatever its size, and on a launch-bound GPU each one is a kernel launch, so the
count says what a round costs beyond its arithmetic (README, "Head drafting costs" and "On a GPU").

    .venv/bin/python scripts/profile_round.py --model models/zoo/rap --data data/rap --lines 2
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import specgen.utils as U  # noqa: E402
from modalities.rap.pipeline import RapPipeline  # noqa: E402

VIEWS = {"view", "as_strided", "transpose", "t", "slice", "select", "unsqueeze", "squeeze", "expand", "narrow",
         "_unsafe_view", "reshape", "alias", "detach", "permute", "split", "unbind", "_reshape_alias",
         "resolve_conj", "resolve_neg", "chunk", "unflatten"}


class Counter(TorchDispatchMode):
    """Counts every dispatched op under the phase the decode loop's Timer is in ('other' outside its phases)."""

    def __init__(self):
        super().__init__()
        self.phase = "other"
        self.ops: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[self.phase][func.__name__.split(".")[0]] += 1
        return func(*args, **(kwargs or {}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/zoo/rap")
    p.add_argument("--data", default="data/rap")
    p.add_argument("--lines", type=int, default=2, help="lyric lines of the first held-out song to decode")
    p.add_argument("--methods", nargs="*", default=["ar", "heads"])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.data, "heldout.jsonl"), encoding="utf-8") as f:
        song = json.loads(f.readline())
    lyrics = "\n".join(song["lyrics"][: args.lines])
    rap = RapPipeline.from_pretrained(args.model)
    counter = Counter()
    timed = U.Timer.__call__

    @contextmanager
    def phase(self, key):  # the loop's Timer, also telling the counter which phase it is in
        before, counter.phase = counter.phase, key
        try:
            with timed(self, key):
                yield
        finally:
            counter.phase = before

    U.Timer.__call__ = phase
    try:
        for method in args.methods:
            rap.generate(song["lyrics"][0], song["beat"], seed=0, method=method)  # warm-up
            st = rap.generate(lyrics, song["beat"], seed=0, method=method).stats
            n = st.target_forwards
            print(f"{method}: {st.new_tokens} tokens in {n} rounds; ms per round: draft {1000 * st.draft_s / n:.2f}, "
                  f"verify {1000 * st.verify_s / n:.2f}, loop {1000 * st.loop_s / n:.2f}")
            counter.ops.clear()
            with counter:
                rounds = rap.generate(lyrics, song["beat"], seed=0, method=method).stats.target_forwards
            for name in ("draft", "verify"):
                ops = counter.ops[name]
                real = sum(v for k, v in ops.items() if k not in VIEWS)
                top = ", ".join(f"{k} {v / rounds:.1f}" for k, v in ops.most_common() if k not in VIEWS)
                print(f"  {name}: {real / rounds:.0f} ops per round (views not counted): {top[:400]}")
    finally:
        U.Timer.__call__ = timed


if __name__ == "__main__":
    main()
