"""Could Hawk's vertical heads join drawn guesses? Measures, on fresh guided rasters, how often a guess drawn from
the horizontal Hydra++ head at each depth is kept under the lossless rule (1 - total variation to the target's
guided distribution), and the same for a draw from a pooled distribution q ~ q_h^a * q_v1^b1 * q_v2^b2 that also
reads the vertical heads' guesses for that position (made one and two rows above). The pooled q is a fair draft
(it depends only on states already decided), so a gain here would be acceptance the vertical heads add to the
default decode. Weights are fitted on half the positions and reported on the other half. Also measured: the
vertical head's top guess as a deterministic sibling of the drawn guess, tested after the drawn one is rejected
(also exact): the tokens a round it adds at that depth, P(reject) * p'(v), p' the residual after the rejection.

    .venv/bin/python scripts/bench_vertical_pool.py --model models/zoo/image-scenes --rasters 48
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modalities.image.vocab import ImageVocab  # noqa: E402
from specgen.drafters import load_heads  # noqa: E402
from specgen.loading import load_causal_lm  # noqa: E402
from specgen.train.data import SequenceSet  # noqa: E402
from specgen.train.heads import self_distillation_data, target_view  # noqa: E402

GRID = 16


def kept(logq: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The chance a draw from softmax(logq) is kept against p: sum of min(p, q)."""
    return torch.minimum(logq.softmax(-1), p).sum(-1)


def sibling_gain(logq: torch.Tensor, logv: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The chance that v = argmax(logv), tried after a draw from softmax(logq) is rejected, is taken: the
    rejection's probability times the residual's mass on v."""
    q = logq.softmax(-1)
    residual = (p - q).clamp(min=0)
    residual = residual / residual.sum(-1, keepdim=True).clamp(min=1e-12)
    return (1 - torch.minimum(p, q).sum(-1)) * residual.gather(-1, logv.argmax(-1, keepdim=True))[..., 0]


def second_draw_gain(logq: torch.Tensor, p: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """The chance that a second guess drawn from softmax(logq) without the first (a distinct sibling, as the
    drawn trees' branching levels make) is taken after the first is rejected: the sum over first draws x1 of
    q(x1) P(reject | x1) = max(q(x1) - p(x1), 0), times sum_x min(r(x), q(x) / (1 - q(x1))) over x != x1, r the
    residual after the rejection (which does not depend on x1)."""
    out = []
    for q, pp in zip(logq.softmax(-1).split(chunk), p.split(chunk)):
        residual = (pp - q).clamp(min=0)
        residual = residual / residual.sum(-1, keepdim=True).clamp(min=1e-12)
        second = q[:, None, :] / (1 - q[:, :, None]).clamp(min=1e-12)  # [n, x1, x]
        taken = torch.minimum(residual[:, None, :], second)
        taken = taken.sum(-1) - taken.diagonal(dim1=1, dim2=2)  # x != x1
        out.append(((q - pp).clamp(min=0) * taken).sum(-1))
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/zoo/image-scenes")
    ap.add_argument("--data", default="data/image/train.pt", help="prompts: training captions (not the benchmark's)")
    ap.add_argument("--rasters", type=int, default=48)
    ap.add_argument("--cfg-scale", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default="docs/bench/vertical-pool.json")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    target = load_causal_lm(os.path.join(args.model, "lm"), "cpu", "float32", what="image LM", narrow=True)
    heads = load_heads(os.path.join(args.model, "heads"), target)
    vocab = ImageVocab.load(os.path.join(args.model, "lm"))
    guidance = (args.cfg_scale, vocab.unconditional([]))
    rows, starts = self_distillation_data(target, SequenceSet(args.data, args.seed), args.rasters, 0, GRID * GRID, 1.0,
                                          16, args.seed, prompt_seed=args.seed + 1, guidance=guidance)
    width = max(len(r) for r in rows)
    seqs = torch.tensor([r + [r[-1]] * (width - len(r)) for r in rows])
    start = torch.tensor(starts)
    n_h, off = heads.num_heads, vocab.code_offset
    per_depth = {d: ([], [], [], []) for d in range(n_h)}  # log q_h, log q_v1, log q_v2, p per position
    with torch.no_grad():
        for i in range(0, len(seqs), 8):
            x, st = seqs[i : i + 8], start[i : i + 8]
            hidden, logits = target_view(target, x, guidance, st)
            guesses = heads.train_logits(hidden, x).float()[..., off:].log_softmax(-1)  # [b, L, heads, codes]
            p = logits.float()[..., off:].softmax(-1)  # position t's distribution for token t + 1
            for b in range(x.shape[0]):
                s = int(st[b])
                for d, lists in per_depth.items():
                    q = torch.arange(s + 2 * GRID, s + GRID * GRID)  # tokens with both vertical guesses
                    for j, t in enumerate((q - 2 - d, q - 1 - GRID, q - 1 - 2 * GRID)):
                        lists[j].append(guesses[b, t, d if j == 0 else n_h + j - 1])
                    lists[3].append(p[b, q - 1])
    report = {"command": " ".join(sys.argv), "depths": []}
    for d, lists in per_depth.items():
        h, v1, v2, p = (torch.cat(t) for t in lists)
        fit = torch.arange(len(p)) % 2 == 0
        best = max(((kept(a * h + b1 * v1 + b2 * v2, p)[fit].mean().item(), a, b1, b2)
                    for a, b1, b2 in itertools.product([0.7, 0.8, 0.9, 1.0, 1.1], [0, .1, .2, .3, .4, .6, .8],
                                                       [0, .1, .2, .3])))
        _, a, b1, b2 = best
        row = {"depth": d + 1, "positions": int((~fit).sum()), "horizontal": kept(h, p)[~fit].mean().item(),
               "vertical_1": kept(v1, p)[~fit].mean().item(), "vertical_2": kept(v2, p)[~fit].mean().item(),
               "pooled": kept(a * h + b1 * v1 + b2 * v2, p)[~fit].mean().item(), "weights": [a, b1, b2],
               "sibling_gain": sibling_gain(h, v1, p)[~fit].mean().item(),
               "own_top_sibling_gain": sibling_gain(h, h, p)[~fit].mean().item(),
               "second_draw_gain": second_draw_gain(h[~fit], p[~fit]).mean().item()}
        report["depths"].append(row)
        print(f"head {d + 1} (guesses t+{d + 2}): horizontal {row['horizontal']:.4f}, vertical alone "
              f"{row['vertical_1']:.4f} / {row['vertical_2']:.4f}, pooled {row['pooled']:.4f} "
              f"(weights {a}, {b1}, {b2}); a sibling adds, if the vertical top guess {row['sibling_gain']:.4f}, "
              f"the horizontal top guess {row['own_top_sibling_gain']:.4f}, a second draw "
              f"{row['second_draw_gain']:.4f}")
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
