"""What a one-row matrix product costs on this CPU in fp32, fp16 and bf16 when its weights come from memory, not
the cache: the situation of draft heads, whose weights the target's forward has pushed out of the cache by the
time they draft. Interleaved, so every precision sees the same machine.

    python scripts/bench_draft_precision.py --dims 384 --matrices 6

Prints a markdown table of median microseconds per product (after a cache-clearing pass over a buffer larger
than the last-level cache) and the ratio to fp32; writes JSON with --json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def product_us(weights: list[torch.Tensor], x: torch.Tensor, sweep: torch.Tensor, reps: int) -> float:
    """Median microseconds of one x @ W.T over `weights` read right after `sweep` has been written through."""
    times = []
    for _ in range(reps):
        sweep.add_(1.0)  # evict: the buffer is larger than the last-level cache
        t = time.perf_counter()
        for w in weights:
            F.linear(x, w)
        times.append((time.perf_counter() - t) / len(weights) * 1e6)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[384], help="square matrix sizes (a head's width)")
    ap.add_argument("--matrices", type=int, default=6, help="matrices read one after another (a head stack)")
    ap.add_argument("--cache-mb", type=int, default=64, help="size of the cache-clearing buffer")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    sweep = torch.zeros(args.cache_mb * 2**20 // 4)
    runs: dict[int, dict[str, list[float]]] = {d: {p: [] for p in PRECISIONS} for d in args.dims}
    for _ in range(args.rounds):
        for d in args.dims:
            for name, dtype in PRECISIONS.items():
                weights = [torch.randn(d, d).to(dtype) for _ in range(args.matrices)]
                runs[d][name].append(product_us(weights, torch.randn(1, d).to(dtype), sweep, args.reps))
    med = {d: {p: statistics.median(v) for p, v in r.items()} for d, r in runs.items()}
    print(f"one-row products, weights read from memory (torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; median of {args.rounds})\n")
    print("| size | " + " | ".join(f"{p} us" for p in PRECISIONS) + " | " +
          " | ".join(f"{p} / fp32" for p in PRECISIONS if p != "fp32") + " |")
    print("|---" * (1 + 2 * len(PRECISIONS) - 1) + "|")
    for d, m in med.items():
        print(f"| {d} x {d} | " + " | ".join(f"{m[p]:.1f}" for p in PRECISIONS) + " | " +
              " | ".join(f"{m[p] / m['fp32']:.2f}" for p in PRECISIONS if p != "fp32") + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"matrices": args.matrices, "median_us": med}, f, indent=1)


if __name__ == "__main__":
    main()
