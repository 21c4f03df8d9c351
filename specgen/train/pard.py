"""PARD adaptation: teach a small AR draft to predict K tokens in one forward through mask tokens, trained
cheaply with conditional drop tokens (An et al. 2025, "PARD: Accelerating LLM Inference with Low-Cost PARallel
Draft Model Adaptation", Sec. 3).

A training sequence of length L becomes K groups. Group 0 is the real tokens; group i (1..K-1) is L copies of the
mask token whose position ids repeat 0..L-1. The token of group i at position p stands for a mask at inference
whose last real token is at p-i: it sees real tokens 0..p-i, the masks of groups 1..i-1 at positions p-i+1..p-1,
and itself, and it learns x[p+1] (the (i+1)-th token after its last real one). Conditional drop tokens (COD) keep
all of group 0 and int(L * max(r**i, r_min)) positions of group i, drawn only where the predecessor (group i-1,
position p-1) was kept, so every kept token's mask chain is present. K=8, r=0.7, r_min=0.2 keeps ~3.4L tokens
instead of 8L.

    specgen train-pard --init models/zoo/text-draft-5m --train ... --heldout ... --out runs/pard --steps 1500
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..utils import resolve_mixed_precision
from .data import TokenMix
from .lm import export as export_lm
from .lm import Schedule, fit, plain_settings


@dataclass(kw_only=True)
class PardConfig(Schedule):
    """A PARD adaptation run (`specgen train-pard`): `init` the AR draft to adapt (a Hugging Face folder with its
    tokenizer, which needs a mask token), token files with weights for `train` and `heldout`; `k` tokens drafted
    per forward (groups), COD `retention` r (1: no dropping) and `floor` r_min; the rest as in `Schedule`."""

    init: str
    train: str
    heldout: str
    k: int = 8
    retention: float = 0.7
    floor: float = 0.2
    steps: int = 1500
    seq: int = 256
    lr: float = 5e-4
    warmup: int = 50
    eval_windows: int = 32


def cod_layout(length: int, groups: int, retention: float, floor: float, rng: np.random.Generator):
    """Which (group, position) tokens a packed PARD sequence holds: group ids [T] and positions [T], group 0 first.

    retention=1 keeps every token of every group (no COD)."""
    kept = [np.arange(length)]
    for i in range(1, groups):
        # candidates: positions whose predecessor (group i-1, p-1) was kept and that see at least one real token
        cand = np.intersect1d(kept[-1] + 1, np.arange(i, length))
        n = min(len(cand), int(length * max(retention ** i, floor)))
        kept.append(np.sort(rng.choice(cand, size=n, replace=False)) if n < len(cand) else cand)
    group = np.concatenate([np.full(len(k), i) for i, k in enumerate(kept)])
    return torch.from_numpy(group), torch.from_numpy(np.concatenate(kept))


def pard_mask(group: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Visibility [T, T] for a packed layout: row a sees column b."""
    ga, pa = group[:, None], pos[:, None]
    gb, pb = group[None, :], pos[None, :]
    real = (gb == 0) & (pb <= pa - ga)  # real tokens up to the row's last real token
    chain = (gb > 0) & (gb < ga) & (pb == pa - ga + gb)  # masks of earlier groups on the row's chain
    return real | chain | (torch.arange(len(group))[:, None] == torch.arange(len(group))[None, :])


def pard_batch(windows: torch.Tensor, mask_id: int, group: torch.Tensor, pos: torch.Tensor):
    """Inputs, position ids, 4-D additive mask and labels for windows [batch, L] under one layout."""
    b, length = windows.shape
    inputs = torch.where(group == 0, windows[:, pos], torch.full_like(windows[:, pos], mask_id))
    nxt = (pos + 1).clamp(max=length - 1)
    labels = windows[:, nxt].masked_fill((pos + 1 >= length).expand(b, -1), -100)
    see = pard_mask(group, pos)
    attn = torch.zeros(see.shape).masked_fill(~see, torch.finfo(torch.float32).min)
    return inputs, pos.expand(b, -1), attn.expand(b, 1, -1, -1), labels


def train(cfg: PardConfig):
    """Adapt (or go on adapting) the draft `cfg` describes; returns the run's state."""
    from accelerate import Accelerator
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(cfg.seed)
    acc = Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision, cfg.cpu), cpu=cfg.cpu)
    # a draft made for PARD names its mask id in its config (a trimmed-vocabulary draft has no tokenizer of its own)
    mask_id = getattr(AutoConfig.from_pretrained(cfg.init), "pard_token", None)
    if mask_id is None:
        mask_id = AutoTokenizer.from_pretrained(cfg.init).mask_token_id
    if mask_id is None:
        raise ValueError(f"the tokenizer at {cfg.init!r} has no mask token: add one (tokenizer.add_special_tokens("
                         f"{{'mask_token': '<mask>'}}) and resize the draft's embeddings) before PARD training")
    data = TokenMix(cfg.train, cfg.seq, seed=cfg.seed)
    heldout = TokenMix(cfg.heldout, cfg.seq, seed=cfg.seed).batch(0, cfg.eval_windows, seed=4321)
    ckpt = os.path.join(cfg.out, "checkpoint")
    src = ckpt if os.path.isdir(ckpt) else cfg.init
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    model.config.pard_token = mask_id
    state = (json.load(open(os.path.join(ckpt, "state.json"))) if os.path.isdir(ckpt) else
             {"step": 0, "tokens": 0, "real_tokens": 0, "seconds": 0.0, "log": [], "args": plain_settings(cfg)})
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    if os.path.isfile(os.path.join(ckpt, "optimizer.pt")):
        optimizer.load_state_dict(torch.load(os.path.join(ckpt, "optimizer.pt")))
    model, optimizer = acc.prepare(model, optimizer)

    def batch_loss(step: int):
        rng = np.random.default_rng([cfg.seed, step, 7])
        group, pos = cod_layout(cfg.seq, cfg.k, cfg.retention, cfg.floor, rng)
        x = data.batch(step, cfg.batch)
        inputs, positions, attn, labels = (t.to(acc.device) for t in pard_batch(x, mask_id, group, pos))
        logits = model(input_ids=inputs, position_ids=positions, attention_mask=attn).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return loss, {"tokens": inputs.numel(), "real_tokens": x.numel()}

    def evaluate():
        return {"heldout_loss_by_group": heldout_by_group(acc.unwrap_model(model), heldout.to(acc.device), mask_id,
                                                          cfg.k)}

    return fit(acc, model, optimizer, state, cfg, batch_loss, evaluate)


@torch.no_grad()
def heldout_by_group(model, windows: torch.Tensor, mask_id: int, k: int) -> list[float]:
    """Held-out loss of each group with every token kept (group i: predicting i+1 tokens ahead)."""
    model.eval()
    group, pos = cod_layout(windows.shape[1], k, 1.0, 1.0, np.random.default_rng(0))
    sums, counts = torch.zeros(k), torch.zeros(k)
    for w in windows.split(8):
        inputs, positions, attn, labels = pard_batch(w.cpu(), mask_id, group, pos)
        dev = windows.device
        logits = model(input_ids=inputs.to(dev), position_ids=positions.to(dev), attention_mask=attn.to(dev)).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.to(dev).flatten(), ignore_index=-100,
                               reduction="none").view(labels.shape).cpu()
        ok = labels != -100
        for i in range(k):
            sel = ok & (group == i)
            sums[i] += loss[sel].sum()
            counts[i] += sel.sum()
    model.train()
    return (sums / counts.clamp(min=1)).tolist()


def export(run_dir: str, init: str, dest: str, dtype: str = "bfloat16"):
    """The adapted draft as a zoo checkpoint (`pard_token` in its config), with the initial draft's tokenizer (a
    trimmed-vocabulary draft has none: it carries its target tokenizer's fingerprint instead)."""
    has_tokenizer = os.path.isfile(os.path.join(init, "tokenizer_config.json"))
    model = export_lm(run_dir, init if has_tokenizer else None, dest, dtype)
    assert getattr(model.config, "pard_token", None) is not None
