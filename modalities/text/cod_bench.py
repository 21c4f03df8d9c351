"""The training cost of PARD adaptation with and without conditional drop tokens (COD), measured on the same
draft, windows and machine: packed tokens and seconds per training step, extrapolated to one epoch of the
training split.

    python -m modalities.text.cod_bench --init models/zoo/text-draft-5m --steps 20 [--mixed-precision no]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from specgen.train.data import TokenMix
from specgen.train.pard import cod_layout, pard_batch


def measure(init: str, train: str, retention: float, floor: float, k: int, seq: int, batch: int, steps: int,
            seed: int, mixed_precision: str = "bf16") -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32).train()
    mask_id = AutoTokenizer.from_pretrained(init).mask_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = TokenMix(train, seq, seed=seed)
    packed, seconds = [], []
    for step in range(steps + 2):  # two warm-up steps are not timed
        group, pos = cod_layout(seq, k, retention, floor, np.random.default_rng([seed, step]))
        inputs, positions, attn, labels = pard_batch(data.batch(step, batch), mask_id, group, pos)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_precision == "bf16"):
            logits = model(input_ids=inputs, position_ids=positions, attention_mask=attn).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step >= 2:
            seconds.append(time.perf_counter() - t0)
            packed.append(inputs.numel())
    return {"packed_tokens_per_step": float(np.mean(packed)), "real_tokens_per_step": batch * seq,
            "seconds_per_step": float(np.median(seconds))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", default="models/zoo/text-draft-5m")
    ap.add_argument("--train", default="data/text/train.code.bin:1,data/text/train.prose.bin:1")
    ap.add_argument("--corpus-tokens", type=int, default=0, help="tokens in one epoch (default: the train files)")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mixed-precision", default="bf16", choices=["no", "bf16"],
                    help="as `specgen train-pard`: bf16 autocast, or fp32 (faster on CPUs without native bf16)")
    ap.add_argument("--out", default="bench_out")
    a = ap.parse_args(argv)
    epoch = a.corpus_tokens or sum(os.path.getsize(p.split(":")[0]) // 2 for p in a.train.split(","))
    rows = {}
    for name, (r, floor) in {"COD (r=0.7, floor 0.2)": (0.7, 0.2), "no COD (every mask kept)": (1.0, 1.0)}.items():
        m = measure(a.init, a.train, r, floor, a.k, a.seq, a.batch, a.steps, a.seed, a.mixed_precision)
        steps_per_epoch = epoch / m["real_tokens_per_step"]
        m.update(packed_per_real=m["packed_tokens_per_step"] / m["real_tokens_per_step"],
                 epoch_packed_tokens_M=m["packed_tokens_per_step"] * steps_per_epoch / 1e6,
                 epoch_hours=m["seconds_per_step"] * steps_per_epoch / 3600)
        rows[name] = m
        print(name, json.dumps(m), flush=True)
    cod, full = rows.values()
    saving = {"tokens_ratio": full["epoch_packed_tokens_M"] / cod["epoch_packed_tokens_M"],
              "time_ratio": full["epoch_hours"] / cod["epoch_hours"]}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "pard_cod.json"), "w") as f:
        json.dump({"settings": vars(a), "epoch_tokens": epoch, "rows": rows, "saving": saving}, f, indent=1)
    lines = ["| training | packed tokens per real token | tokens per epoch | seconds per step | hours per epoch |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {m['packed_per_real']:.2f} | {m['epoch_packed_tokens_M']:.1f}M | {m['seconds_per_step']:.2f} |"
              f" {m['epoch_hours']:.2f} |" for n, m in rows.items()]
    lines.append(f"\nCOD saves {saving['tokens_ratio']:.2f}x the tokens and {saving['time_ratio']:.2f}x the time "
                 f"per epoch (K={a.k}, L={a.seq}).")
    md = "\n".join(lines)
    with open(os.path.join(a.out, "pard_cod.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
