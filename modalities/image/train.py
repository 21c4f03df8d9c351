"""Train the image model's parts on scenes drawn here. Steps, in order:

    python -m modalities.image.train vq --out models/zoo/image-scenes --steps 3000
    python -m modalities.image.train sequences --out models/zoo/image-scenes --data data/image --scenes 20000
    specgen train-lm --preset text-12m --vocab V --train data/image/train.pt --heldout data/image/heldout.pt \\
        --out runs/image-lm --context 320 --seq 320            (V is printed by the sequences step)
    specgen train-lm ... --export models/zoo/image-scenes/lm ; then copy image_vocab.json into it
    specgen train-heads --target models/zoo/image-scenes/lm --kind hawk --horizontal hydra \\
        --data data/image/train.pt --out runs/image-heads --new-tokens 256 --cfg-scale 3 --uncond-prompt 1,5,3
        (the exact zoo commands: scripts/train_media_zoo.sh image ...)
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import time

import numpy as np
import torch

from modalities.image.vq import ImageTokenizer

from .scenes import check, draw, random_scene
from .vocab import ImageVocab


def heldout_caption(caption: str) -> bool:
    """About one caption in ten is kept out of training, by a hash of its text."""
    return hashlib.sha256(caption.encode()).digest()[0] < 26


def scenes(count: int, seed: int, heldout: bool):
    """(caption, image) pairs on the chosen side of the caption split, deterministic from the seed."""
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        scene = random_scene(rng)
        if heldout_caption(scene.caption) == heldout:
            out.append((scene.caption, draw(scene, rng)))
    return out


def train_vq(out: str, steps: int, batch: int, lr: float, seed: int, max_minutes: float):
    from tqdm import tqdm

    torch.manual_seed(seed)
    os.makedirs(out, exist_ok=True)
    tok = ImageTokenizer()
    opt = torch.optim.Adam(tok.model.parameters(), lr=lr)
    ckpt = os.path.join(out, "vq.run.pt")
    state = {"step": 0, "log": []}
    if os.path.isfile(ckpt):
        saved = torch.load(ckpt)
        tok.model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
    t0 = time.time()
    bar = tqdm(total=steps, initial=state["step"], desc="vq")
    while state["step"] < steps and (time.time() - t0) / 60 < max_minutes:
        imgs = [im for _, im in scenes(batch, seed * 7919 + state["step"], heldout=False)]
        loss, mse = tok.loss(tok.to_tensor(imgs))
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["step"] += 1
        bar.update(1)
        bar.set_postfix(mse=f"{mse.item():.4f}")
        if state["step"] % 200 == 0:
            state["log"].append({"step": state["step"], "mse": mse.item()})
            torch.save({"model": tok.model.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
    torch.save({"model": tok.model.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt + ".tmp")
    os.replace(ckpt + ".tmp", ckpt)
    tok.model.eval()
    tok.save(os.path.join(out, "vq"))
    report = vq_quality(tok, 200, seed + 1)
    print(f"VQ after {state['step']} steps: {report}")
    return report


@torch.no_grad()
def vq_quality(tok: ImageTokenizer, count: int, seed: int) -> dict:
    """Reconstruction MSE (pixels in [-1, 1]) and how often the checker still accepts reconstructed scenes."""
    pairs = scenes(count, seed, heldout=True)
    codes = tok.encode([im for _, im in pairs])
    recon = tok.decode(codes)
    x = tok.to_tensor([im for _, im in pairs])
    mse = (tok.to_tensor(list(recon)) - x).pow(2).mean().item()
    from PIL import Image

    kept = np.mean([check(Image.fromarray(r), c)["all"] for (c, _), r in zip(pairs, recon)])
    original = np.mean([check(im, c)["all"] for c, im in pairs])
    return {"mse": round(mse, 5), "adherence_reconstructed": float(kept), "adherence_original": float(original)}


def build_sequences(out: str, data: str, count: int, heldout: int, dropout: float, seed: int):
    """<s> caption <sep> 256 codes; the caption is replaced by <null> with probability `dropout` (for CFG)."""
    tok = ImageTokenizer.load(os.path.join(out, "vq"))
    vocab = ImageVocab(tok.size)
    rng = random.Random(seed)
    os.makedirs(data, exist_ok=True)
    for split, n, heldout_side in (("train", count, False), ("heldout", heldout, True)):
        pairs = scenes(n, seed + (1 if heldout_side else 0), heldout_side)
        seqs = []
        for i in range(0, len(pairs), 64):
            chunk = pairs[i : i + 64]
            codes = tok.encode([im for _, im in chunk]).view(len(chunk), -1).tolist()
            for (caption, _), c in zip(chunk, codes):
                drop = split == "train" and rng.random() < dropout
                prefix = vocab.prefix(None if drop else caption)
                seqs.append({"ids": prefix + vocab.code_ids(c), "loss_from": len(prefix), "caption": caption})
        torch.save(seqs, os.path.join(data, f"{split}.pt"))
        print(f"{split}: {len(seqs)} sequences")
    vocab.save(os.path.join(out, "lm"))
    print(f"vocabulary: {len(vocab)} ids ({len(vocab.words)} words, {vocab.codes} codes)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["vq", "sequences"])
    ap.add_argument("--out", default="models/zoo/image-scenes")
    ap.add_argument("--data", default="data/image")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--scenes", type=int, default=20000)
    ap.add_argument("--heldout", type=int, default=400)
    ap.add_argument("--dropout", type=float, default=0.1, help="caption dropout for classifier-free guidance")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=1e9)
    a = ap.parse_args(argv)
    if a.step == "vq":
        train_vq(a.out, a.steps, a.batch, a.lr, a.seed, a.max_minutes)
    else:
        build_sequences(a.out, a.data, a.scenes, a.heldout, a.dropout, a.seed)


if __name__ == "__main__":
    main()
