"""What one verification forward costs by the number of nodes it checks, on a model with its KV cache part full:
milliseconds per forward of `CachedLM.step` for n = 1 (an `ar` step) to N nodes, each forward over `--rows` batch
rows (2 for one image with CFG: the conditioned and unconditioned rows), so a forward multiplies rows x n
activations by every weight. On a CPU the cost does not grow smoothly with that count: it follows the matrix
library's blocking, and a tree size whose forward lands on a cheap count is worth more than its neighbours
(README, "Image"). `--caches growing dynamic` times specgen's in-place KV cache against transformers'
`DynamicCache` (which copies every layer's keys and values each forward), interleaved in the same rounds.

    .venv/bin/python scripts/bench_verify_rows.py --model models/zoo/image-scenes/lm --rows 2 --max-nodes 12
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from transformers import DynamicCache

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import specgen.cached_lm as cached_lm  # noqa: E402
from specgen.cached_lm import CachedLM  # noqa: E402
from specgen.loading import load_causal_lm  # noqa: E402


def forward_ms(lm: CachedLM, rows: int, context: int, n: int, reps: int) -> float:
    """Mean of the faster half of `reps` forwards of n new nodes after `context` cached tokens (each dropped
    again, so every forward sees the same cache)."""
    lm.prefill([[3 + (i % 50) for i in range(context)]] * rows)
    tokens = torch.full((rows, n), 4, dtype=torch.long, device=lm.device)
    times = []
    for _ in range(reps + 5):
        t = time.perf_counter()
        lm.step(tokens)
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        lm.commit([[] for _ in range(rows)])
    times = sorted(times[5:])[: max(1, reps // 2)]
    return 1000 * sum(times) / len(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/zoo/image-scenes/lm")
    p.add_argument("--rows", type=int, default=2, help="batch rows per forward (2: one image with CFG)")
    p.add_argument("--context", type=int, default=160, help="tokens already in the cache")
    p.add_argument("--max-nodes", type=int, default=12)
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3, help="passes over every n, interleaved (the machine drifts)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--caches", nargs="+", default=["growing"], choices=["growing", "dynamic"],
                   help="KV caches to time: specgen's in-place one, transformers' DynamicCache")
    p.add_argument("--out", help="also write the table as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lm = CachedLM(load_causal_lm(args.model, None, "float32", what="model", narrow=True))
    sizes = list(range(1, args.max_nodes + 2))  # nodes verified plus the root
    factories = {"growing": cached_lm.growing_cache, "dynamic": lambda limit=None: DynamicCache()}
    runs = {(c, n): [] for c in args.caches for n in sizes}
    for _ in range(args.rounds):
        for n in sizes:
            for c in args.caches:
                cached_lm.growing_cache = factories[c]  # what CachedLM.reset makes
                runs[c, n].append(forward_ms(lm, args.rows, args.context, n, args.reps))
    cached_lm.growing_cache = factories["growing"]
    one = {c: min(runs[c, 1]) for c in args.caches}
    print("| tree nodes | tokens per forward | rows multiplied | "
          + " | ".join(f"ms, {c} cache (best of rounds) | / ar step" for c in args.caches) + " |")
    print("|---|---|---|" + "---|---|" * len(args.caches))
    table = []
    for n in sizes:
        cells = []
        for c in args.caches:
            ms = min(runs[c, n])
            table.append({"cache": c, "tree_nodes": n - 1, "tokens": n, "rows": n * args.rows, "ms": ms,
                          "vs_ar": ms / one[c], "runs": runs[c, n]})
            cells.append(f"{ms:.2f} | {ms / one[c]:.2f}")
        print(f"| {n - 1 if n > 1 else 'ar'} | {n} | {n * args.rows} | " + " | ".join(cells) + " |")
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            json.dump({"settings": vars(args), "table": table}, f, indent=1)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
