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

With a `teacher` (the target), the draft also learns the target's own next-token distribution (logit distillation,
as DistillSpec does): the teacher reads the same window once, its top-`teacher_topk` probabilities over the
draft's ids (renormalised) become the soft label of every row that predicts that position, and the loss is
`distill` * soft + (1 - `distill`) * the data's token. A trimmed-vocabulary draft then reads target-id files
(`.u32`) and maps them itself. The held-out log adds each group's top-1 agreement with the teacher, the figure
that acceptance follows.

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
    teacher: str | None = None
    distill: float = 0.8
    teacher_topk: int = 32


class Teacher:
    """The target a draft distils from: its next-token probabilities over the draft's ids (a trimmed draft's
    mapped ids; mass outside them is dropped and the rest renormalised), kept as the top `topk`."""

    def __init__(self, path: str, draft_config, device, topk: int):
        from ..loading import load_causal_lm, load_tokenizer
        from ..vocab_map import VocabMap, tokenizer_fingerprint

        self.lm = load_causal_lm(path, device=device, dtype="float32", what="teacher").eval()
        head = self.lm.get_output_embeddings().weight.detach()
        want = getattr(draft_config, "target_tokenizer", None)
        if want is not None and tokenizer_fingerprint(load_tokenizer(path, what="teacher")) != want:
            raise ValueError(f"the teacher at {path!r} has another tokenizer than the one this draft was made for "
                             f"(target_tokenizer differs): give the target the draft serves")
        self.vmap = VocabMap.of(draft_config, draft_config.vocab_size, head.shape[0], device)
        if self.vmap is None and draft_config.vocab_size < head.shape[0]:
            raise ValueError(f"the draft's vocabulary ({draft_config.vocab_size}) is smaller than the teacher's "
                             f"({head.shape[0]}) and it carries no draft_to_target map: they do not share ids")
        self.head = head[self.vmap.d2t] if self.vmap is not None else head
        self.cap = getattr(self.lm.config, "final_logit_softcapping", None)
        self.topk = topk

    def to_draft(self, ids: torch.Tensor) -> torch.Tensor:
        """Windows of target ids as the draft's input ids."""
        return self.vmap.to_draft(ids) if self.vmap is not None else ids

    @torch.no_grad()
    def top(self, ids: torch.Tensor):
        """Target-id windows [B, L] -> (draft ids [B, L, topk], probabilities [B, L, topk] summing to 1): the
        teacher's distribution of the token after each position."""
        logits = self.lm.base_model(input_ids=ids).last_hidden_state @ self.head.T
        if self.cap:
            logits = torch.tanh(logits / self.cap) * self.cap
        val, idx = torch.softmax(logits.float(), -1).topk(self.topk, -1)
        return idx, val / val.sum(-1, keepdim=True)


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
    if not 0 <= cfg.distill <= 1:
        raise ValueError(f"--distill is the teacher's share of the loss: give a value in [0, 1], not {cfg.distill}")
    data = TokenMix(cfg.train, cfg.seq, seed=cfg.seed)
    heldout = TokenMix(cfg.heldout, cfg.seq, seed=cfg.seed).batch(0, cfg.eval_windows, seed=4321)
    ckpt = os.path.join(cfg.out, "checkpoint")
    src = ckpt if os.path.isdir(ckpt) else cfg.init
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    model.config.pard_token = mask_id
    teacher = Teacher(cfg.teacher, model.config, acc.device, cfg.teacher_topk) if cfg.teacher else None
    held_top = None
    if teacher is not None:
        held_top = torch.cat([teacher.top(w.to(acc.device))[0][..., 0] for w in heldout.split(8)])
        heldout = teacher.to_draft(heldout.to(acc.device))
    if int(heldout.max()) >= model.config.vocab_size:
        raise ValueError(f"the token files hold id {int(heldout.max())}, beyond the draft's vocabulary of "
                         f"{model.config.vocab_size}: a trimmed draft trained with --teacher reads target-id files "
                         f"(.u32); without one, files in the draft's own ids")
    state = (json.load(open(os.path.join(ckpt, "state.json"))) if os.path.isdir(ckpt) else
             {"step": 0, "tokens": 0, "real_tokens": 0, "seconds": 0.0, "log": [], "args": plain_settings(cfg)})
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    if os.path.isfile(os.path.join(ckpt, "optimizer.pt")):
        optimizer.load_state_dict(torch.load(os.path.join(ckpt, "optimizer.pt")))
    model, optimizer = acc.prepare(model, optimizer)

    def batch_loss(step: int):
        rng = np.random.default_rng([cfg.seed, step, 7])
        group, pos = cod_layout(cfg.seq, cfg.k, cfg.retention, cfg.floor, rng)
        ids = data.batch(step, cfg.batch).to(acc.device)
        x = teacher.to_draft(ids) if teacher is not None else ids
        inputs, positions, attn, labels = (t.to(acc.device) for t in pard_batch(x, mask_id, group, pos))
        logits = model(input_ids=inputs, position_ids=positions, attention_mask=attn).logits.float()
        if teacher is None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        else:  # cross-entropies as logsumexp minus the label's logit: no [rows, vocab] log-softmax kept
            idx, prob = teacher.top(ids)  # [B, L, topk]: the token after each position
            pick = pos.to(acc.device)
            lse = torch.logsumexp(logits, -1)
            hard = lse - logits.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
            soft = lse - (logits.gather(-1, idx[:, pick]) * prob[:, pick]).sum(-1)
            loss = ((1 - cfg.distill) * hard + cfg.distill * soft)[labels != -100].mean()
        return loss, {"tokens": inputs.numel(), "real_tokens": x.numel()}

    def evaluate():
        losses, agree = heldout_by_group(acc.unwrap_model(model), heldout.to(acc.device), mask_id, cfg.k, held_top)
        return {"heldout_loss_by_group": losses, **({"heldout_agree_by_group": agree} if agree else {})}

    return fit(acc, model, optimizer, state, cfg, batch_loss, evaluate)


@torch.no_grad()
def heldout_by_group(model, windows: torch.Tensor, mask_id: int, k: int, teacher_top: torch.Tensor | None = None):
    """Held-out loss of each group with every token kept (group i: predicting i+1 tokens ahead), and with the
    teacher's top-1 draft ids [N, L] for the token after each position, each group's top-1 agreement with them
    (else an empty list)."""
    model.eval()
    group, pos = cod_layout(windows.shape[1], k, 1.0, 1.0, np.random.default_rng(0))
    sums, counts, hits = torch.zeros(k), torch.zeros(k), torch.zeros(k)
    for n, w in enumerate(windows.split(8)):
        inputs, positions, attn, labels = pard_batch(w.cpu(), mask_id, group, pos)
        dev = windows.device
        logits = model(input_ids=inputs.to(dev), position_ids=positions.to(dev), attention_mask=attn.to(dev)).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.to(dev).flatten(), ignore_index=-100,
                               reduction="none").view(labels.shape).cpu()
        ok = labels != -100
        same = (logits.argmax(-1).cpu() == teacher_top[n * 8 : n * 8 + len(w)].cpu()[:, pos]
                if teacher_top is not None else None)
        for i in range(k):
            sel = ok & (group == i)
            sums[i] += loss[sel].sum()
            counts[i] += sel.sum()
            if same is not None:
                hits[i] += (same & sel).sum()
    model.train()
    counts = counts.clamp(min=1)
    return (sums / counts).tolist(), ((hits / counts).tolist() if teacher_top is not None else [])


def export(run_dir: str, init: str, dest: str, dtype: str = "bfloat16"):
    """The adapted draft as a zoo checkpoint (`pard_token` in its config), with the initial draft's tokenizer (a
    trimmed-vocabulary draft has none: it carries its target tokenizer's fingerprint instead)."""
    has_tokenizer = os.path.isfile(os.path.join(init, "tokenizer_config.json"))
    model = export_lm(run_dir, init if has_tokenizer else None, dest, dtype)
    assert getattr(model.config, "pard_token", None) is not None
