"""Where the image model loses its captions: the scene checker's verdicts split by attribute (colour, shape, size,
relation), by caption length (one shape or two), and by CFG scale, for `ar` images, beside the same split for the
VQ tokenizer's reconstructions of real scenes (the ceiling every generated image lives under).

    python -m modalities.image.adherence --model models/zoo/image-scenes --split train --captions 48 --samples 2 \
        --cfg-scales 1 3 5 --out bench_out/adherence

`--split train` (the default) chooses settings on training captions; `--split heldout` measures. Writes
<out>/image-adherence.{json,md} and a sample sheet per scale (image-adherence-cfg<scale>.png)."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

ATTRIBUTES = ("color", "shape", "size", "relation")


def attribute_rates(verdicts: list[dict]) -> dict[str, float]:
    """Per attribute, the share of checks passed (a two-shape caption checks colour, shape and size twice); `all`
    is the share of images right on every attribute; None where no caption has the attribute."""
    out: dict[str, float | None] = {}
    for a in ATTRIBUTES:
        hits = [v[k] for v in verdicts for k in v if k == a or k.endswith("." + a)]
        out[a] = float(np.mean(hits)) if hits else None
    out["all"] = float(np.mean([v["all"] for v in verdicts])) if verdicts else None
    return out


def table(rows: list[dict]) -> str:
    cols = ["source", "captions", "images", "all", *ATTRIBUTES]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["source"], r["captions"], str(r["images"])]
        cells += ["—" if r[c] is None else f"{r[c]:.1%}" for c in ("all", *ATTRIBUTES)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def split_rows(source: str, verdicts: list[dict], lengths: list[int]) -> list[dict]:
    """One row over every caption, then one per caption length (1 or 2 shapes)."""
    rows = []
    for label, keep in (("all", None), ("one shape", 1), ("two shapes", 2)):
        sel = [v for v, n in zip(verdicts, lengths) if keep is None or n == keep]
        if sel:
            rows.append({"source": source, "captions": label, "images": len(sel), **attribute_rates(sel)})
    return rows


def run(args) -> str:
    import torch
    from PIL import Image

    from .bench import sample_sheet
    from .pipeline import ImagePipeline, ImageResult
    from .scenes import check, parse_caption
    from .train import scenes

    if args.captions < 1 or args.samples < 1 or not args.cfg_scales:
        raise ValueError("--captions and --samples must be at least 1, and --cfg-scales needs a scale")
    gen = ImagePipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    pairs = scenes(args.captions, args.seed + 1, heldout=args.split == "heldout")
    captions = [c for c, _ in pairs]
    lengths = [len(parse_caption(c).things) for c in captions]
    rows = []
    # the ceiling: the real scenes, and their VQ reconstructions
    with torch.no_grad():
        recon = gen.tokenizer.decode(gen.tokenizer.encode([im for _, im in pairs]))
    rows += split_rows("drawn scene", [check(im, c) for c, im in pairs], lengths)
    rows += split_rows("VQ reconstruction", [check(Image.fromarray(r), c) for c, r in zip(captions, recon)], lengths)
    os.makedirs(args.out, exist_ok=True)
    for scale in args.cfg_scales:
        verdicts, lens, cells = [], [], []
        for i, caption in enumerate(captions):
            res = gen.generate(caption, cfg_scale=scale, temperature=args.temperature, top_k=args.top_k,
                               method="ar", samples=args.samples, seed=args.seed + i)
            verdicts += [check(im, caption) for im in res.images]
            lens += [lengths[i]] * len(res.images)
            if i < args.sheet_rows:
                cells.append((caption, "ar", ImageResult(res.images, res.stats, []).grid()))
        rows += split_rows(f"ar, CFG {scale:g}", verdicts, lens)
        sample_sheet(cells, ["ar"]).save(os.path.join(args.out, f"image-adherence-cfg{scale:g}.png"))
        print(f"CFG {scale:g} done", flush=True)
    md = table(rows)
    with open(os.path.join(args.out, "image-adherence.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": vars(args), "rows": rows}, f, indent=1)
    with open(os.path.join(args.out, "image-adherence.md"), "w", encoding="utf-8") as f:
        f.write(md)
    print(md)
    return md


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/zoo/image-scenes")
    ap.add_argument("--split", default="train", choices=["train", "heldout"])
    ap.add_argument("--captions", type=int, default=48)
    ap.add_argument("--samples", type=int, default=2, help="images per caption and scale")
    ap.add_argument("--cfg-scales", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--sheet-rows", type=int, default=8, help="captions shown in each scale's sample sheet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device")
    ap.add_argument("--dtype")
    ap.add_argument("--out", default="bench_out/adherence")
    run(ap.parse_args(argv))


if __name__ == "__main__":
    main()
