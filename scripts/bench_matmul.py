"""What one target forward of n tokens costs on this CPU with each of the products specgen/kernels/narrow.py can
use: PyTorch's `linear`, the `W @ x.T` form, and specgen's kernel (specgen/kernels/csrc/rows.c), interleaved so all
see the same machine.

    python scripts/bench_matmul.py models/zoo/speech-tts/lm --context 300 --tokens 1 2 5 9 16
    python scripts/bench_matmul.py models/zoo/image-scenes/lm --batch 2 --context 160 --tokens 1 2 3 4 6 8 12

Prints a markdown table of median milliseconds per forward (and the ratio to one token) and writes JSON with
--json. The ratio is what speculation pays to check n guesses against one decode step.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from specgen import CachedLM, config, kernels
from specgen.kernels import build


def forward_ms(lm: CachedLM, n: int, reps: int) -> float:
    """Mean milliseconds of one n-token chain step per row on the prefilled cache (rolled back each time)."""
    tokens = torch.randint(3, lm.vocab, (lm.batch, n))

    def once():
        lm.step(tokens)
        lm.commit([[] for _ in range(lm.batch)])  # keep none of them: the cache is as before

    for _ in range(3):
        once()
    t = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - t) / reps * 1000


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a Hugging Face causal LM folder")
    ap.add_argument("--context", type=int, default=300, help="tokens already in the cache")
    ap.add_argument("--tokens", type=int, nargs="+", default=[1, 2, 5, 9, 16], help="tokens per row")
    ap.add_argument("--batch", type=int, default=1, help="rows (image with CFG: 2 per sample)")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds; the median is reported")
    ap.add_argument("--reps", type=int, default=40, help="forwards per measurement")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    lm = CachedLM(kernels.narrow_matmuls(model))
    lm.check_length(args.context + max(args.tokens))
    lm.prefill([[3 + i % (lm.vocab - 3) for i in range(args.context)]] * args.batch)
    switches = {"linear": (False, False), "W @ x.T": (True, False), "kernel": (True, True)}  # (CPU_MATMUL, CPU_KERNEL)
    if build.kernel() is None:
        del switches["kernel"]  # (build.kernel warned why)
    saved = config.CPU_MATMUL, config.CPU_KERNEL
    runs: dict[str, dict[int, list[float]]] = {name: {} for name in switches}
    try:
        for _ in range(args.rounds):
            for name, (config.CPU_MATMUL, config.CPU_KERNEL) in switches.items():
                for n in args.tokens:
                    runs[name].setdefault(n, []).append(forward_ms(lm, n, args.reps))
    finally:
        config.CPU_MATMUL, config.CPU_KERNEL = saved
    med = {name: {n: statistics.median(v) for n, v in r.items()} for name, r in runs.items()}
    one = {name: m.get(1) for name, m in med.items()}
    print(f"{args.model}: ms per forward of {args.batch} row(s) ({args.context} tokens cached; median of "
          f"{args.rounds})\n")
    print("| tokens | " + " | ".join(runs) + " | " + " | ".join(f"{k} / 1 token" for k in runs) + " |")
    print("|---" * (1 + 2 * len(runs)) + "|")
    for n in args.tokens:
        ratios = [f"{med[k][n] / one[k]:.2f}" if one[k] else "-" for k in runs]
        print(f"| {n} | " + " | ".join(f"{med[k][n]:.2f}" for k in runs) + " | " + " | ".join(ratios) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "context": args.context, "batch": args.batch, "median_ms": med}, f,
                      indent=1)


if __name__ == "__main__":
    main()
