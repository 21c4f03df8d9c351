"""`specgen bench image`: `ar`, Hawk with horizontal heads only, Hawk with horizontal and vertical heads, Hawk
with horizontal guesses drawn from the heads (no vertical ones), the same with a run of vertical guesses drawn
below the drawn chain, and Hawk with relaxed (LANTERN-style) acceptance, on held-out captions. Per row:
token-stage speedup over `ar`, mean accepted length, prompt adherence (the scene checker's verdict on every
sample), and diversity (mean pixel distance between samples of one caption). A grid of samples is written
beside the table."""
from __future__ import annotations

import argparse
import itertools
import os

import numpy as np
from PIL import Image

from modalities.bench import (add_phases, add_setting_sweeps, head_variants, round_ms, settings, sweep_rows, warm_up,
                              with_drafting, write_outputs)

from .scenes import check
from .train import scenes

COLUMNS = [("method", "method", str), ("tokens_per_s", "tokens/s", lambda v: f"{v:.1f}"),
           ("speedup", "speedup vs ar", lambda v: f"{v:.2f}x"), ("mean_accepted", "mean accepted",
                                                                 lambda v: f"{v:.2f}"),
           ("adherence", "adherence", lambda v: f"{v:.1%}"), ("diversity", "diversity", lambda v: f"{v:.3f}"),
           ("lossless", "lossless", str)]

HAWK = {"hawk horizontal": dict(method="hawk", vertical=False, draws="top"),
        "hawk horizontal+vertical": dict(method="hawk", draws="top"),
        "hawk horizontal, drawn guesses": dict(method="hawk", vertical=False, draws="sample"),
        # the default: at the CPU tree size the split gives the run no nodes, and this is the row above
        "hawk horizontal+vertical, drawn guesses": dict(method="hawk", draws="sample"),
        "hawk + relaxed": dict(method="hawk", acceptance="relaxed")}
ROWS = {"horizontal": "hawk horizontal", "vertical": "hawk horizontal+vertical",
        "drawn": "hawk horizontal, drawn guesses", "drawn-vertical": "hawk horizontal+vertical, drawn guesses",
        "relaxed": "hawk + relaxed"}


def sample_sheet(cells: list[tuple[str, str, Image.Image]], methods: list[str]) -> Image.Image:
    """A labelled sheet: one row per caption (its text on the left), one column per method (a strip of samples)."""
    from PIL import ImageDraw

    captions = list(dict.fromkeys(c for c, _, _ in cells))
    w, h = cells[0][2].size
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label, head = int(max(measure.textlength(c) for c in captions)) + 12, 16
    sheet = Image.new("RGB", (label + w * len(methods), head + (h + 4) * len(captions)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, m in enumerate(methods):
        draw.text((label + j * w + 2, 2), m.replace("hawk ", "").replace("horizontal", "horiz."), fill=(0, 0, 0))
    for caption, method, strip in cells:
        r, j = captions.index(caption), methods.index(method)
        y = head + r * (h + 4)
        sheet.paste(strip, (label + j * w, y))
        draw.text((4, y + h // 2 - 5), caption, fill=(0, 0, 0))
    return sheet


def bench(args) -> str:
    from .pipeline import ImagePipeline, ImageResult

    gen = ImagePipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    batch = args.sample_batch or args.samples
    if batch < 1:
        raise ValueError(f"--sample-batch must be >= 1, got {batch}")
    variants = head_variants(gen, args.heads)
    methods = {"ar": (gen, dict(method="ar"))}
    drawn = [ROWS["drawn"]] + [ROWS["drawn-vertical"]] * ("drawn-vertical" in args.rows)  # the rows sweeps vary
    chosen = {ROWS[r] for r in args.rows}
    for label, pipe in variants:
        tag = f" ({label})" if len(variants) > 1 else ""
        rows = {name: kw for name, kw in HAWK.items() if name in chosen}
        for name in drawn:
            rows.update(sweep_rows(name, HAWK[name], args))
        methods.update({name + tag: (pipe, kw) for name, kw in rows.items()})
    captions = [c for c, _ in scenes(args.captions, args.seed + 1, heldout=args.split == "heldout")]
    tally = {m: {"tokens": 0, "seconds": 0.0, "acc": [], "ok": [], "div": [], "lossless": True} for m in methods}

    def with_tree(kw):
        return {"tree_size": args.tree_size, **kw} if kw["method"] == "hawk" else kw

    warm_up(lambda pipe, kw: pipe.generate(captions[0], cfg_scale=args.cfg_scale, samples=1,
                                           temperature=args.temperature, **with_drafting(with_tree(kw))),
            methods.values())
    grid = []
    for i, caption in enumerate(captions):
        for name, (pipe, kw) in methods.items():
            t, images = tally[name], []
            for j in range(0, args.samples, batch):  # `batch` samples per call, each call with its own seed
                res = pipe.generate(caption, cfg_scale=args.cfg_scale, temperature=args.temperature,
                                    samples=min(batch, args.samples - j), seed=args.seed + i + 1000 * j,
                                    **with_drafting(with_tree(kw)))
                t["tokens"] += res.stats.new_tokens * len(res.images)
                t["seconds"] += res.stats.wall_s
                t["acc"].append(res.stats.mean_accepted)
                t["lossless"] &= res.stats.lossless
                add_phases(t, res.stats)
                images += res.images
            t["ok"] += [check(im, caption)["all"] for im in images]
            pix = [np.asarray(im, dtype=np.float32) / 255 for im in images]
            t["div"] += [float(np.abs(a - b).mean()) for a, b in itertools.combinations(pix, 2)]
            if i < args.grid_rows:
                grid.append((caption, name, ImageResult(images, res.stats, []).grid()))
        print(f"caption {i + 1}/{len(captions)} done", flush=True)
    base = tally["ar"]["tokens"] / tally["ar"]["seconds"]
    rows = [{"group": "image", "method": m, "tokens_per_s": t["tokens"] / t["seconds"],
             "speedup": t["tokens"] / t["seconds"] / base, "mean_accepted": float(np.mean(t["acc"])),
             "adherence": float(np.mean(t["ok"])), "diversity": float(np.mean(t["div"])) if t["div"] else 0.0,
             "lossless": "yes" if t["lossless"] else "no", "round_ms": round_ms(t)} for m, t in tally.items()]
    os.makedirs(args.out, exist_ok=True)
    md = write_outputs(args.out, "image", rows, {**settings(args), "captions": captions},
                       "image tokens: speedup over ar", COLUMNS)
    if grid:
        sample_sheet(grid, list(methods)).save(os.path.join(args.out, "image-samples.png"))
    print(md)
    return md


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--model", default="models/zoo/image-scenes")
    p.add_argument("--captions", type=int, default=16, help="held-out captions")
    add_setting_sweeps(p, "captions", "drawn guesses (and drawn guesses with vertical ones, when a row)")
    p.add_argument("--samples", type=int, default=4, help="images per caption and method")
    p.add_argument("--sample-batch", type=int, help="samples per generate call (default: all of them in one batch; "
                                                    "1: one image at a time, the latency case)")
    p.add_argument("--cfg-scale", type=float, default=3.0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--grid-rows", type=int, default=4, help="captions shown in the sample sheet")
    p.add_argument("--heads", nargs="*", help="other Hawk heads folders trained on this LM, compared in the same run")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS),
                   help="Hawk rows to time beside ar (default: all): horizontal top-k, horizontal+vertical top-k, "
                        "drawn horizontal guesses, drawn guesses with a run of vertical ones below their chain (the "
                        "default decode; at the CPU tree size the run gets no nodes), relaxed acceptance")
    p.add_argument("--tree-size", type=int, help="candidate nodes per round (default: the heads' CPU size, or 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--out", default="bench_out")
