"""Train draft heads on a frozen target by self-distillation: the target continues prompts from the training
data, and each head learns the target's own distribution for the token it guesses (Medusa-2, Cai et al. 2024,
Sec. 2.3.2; Hydra++, Ankner et al. 2024, teacher loss).

    specgen train-heads --target models/zoo/text-30m --kind medusa --data data/text/train.code.bin:1,... \\
        --out models/zoo/text-30m-medusa
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from ..cached_lm import CachedLM, listen_hidden
from ..heads.base import KINDS
from ..loop import generate
from ..sampling import Sampling
from .data import TokenMix
from .lm import lr_at, plain_args


def self_distillation_data(target, data: TokenMix, count: int, prompt_len: int, new_tokens: int,
                           temperature: float, batch: int, seed: int) -> torch.Tensor:
    """`count` sequences [count, prompt_len + new_tokens]: data prompts continued by the target itself."""
    from tqdm import tqdm

    lm = CachedLM(target)
    gen = torch.Generator(lm.device).manual_seed(seed)
    rows = []
    for i in tqdm(range(0, count, batch), desc="target continuations"):
        prompts = data.batch(i, min(batch, count - i), seed=seed)[:, :prompt_len].tolist()
        outs = generate(lm, prompts, None, Sampling(temperature) if temperature else Sampling(),
                        max_new_tokens=new_tokens, generator=gen)
        rows += [p + o.token_ids for p, o in zip(prompts, outs)]
    return torch.tensor(rows)


def distill_loss(head_logits: torch.Tensor, target_logits: torch.Tensor, decay: float = 0.8):
    """Sum over heads i of decay**i * KL(target || head i) where head i at position t guesses token t+2+i, whose
    target distribution is the target's prediction at t+1+i. head_logits [b, L, heads, V], target_logits [b, L, V].
    Returns the loss and each head's mean KL."""
    per_head = []
    heads = head_logits.shape[2]
    length = head_logits.shape[1]
    total = 0.0
    for i in range(heads):
        span = length - 1 - i
        if span <= 0:
            break
        teacher = F.log_softmax(target_logits[:, 1 + i : 1 + i + span].float(), -1)
        student = F.log_softmax(head_logits[:, :span, i].float(), -1)
        kl = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1).mean()
        per_head.append(kl.item())
        total = total + decay**i * kl
    return total, per_head


@torch.no_grad()
def topk_accuracy(heads, target, seqs: torch.Tensor, ranks: int = 8, batch: int = 8) -> list[list[float]]:
    """accuracy[d][r]: how often head d's rank-r token is the target's greedy choice (calibrates the tree)."""
    hits = torch.zeros(heads.num_heads, ranks)
    counts = torch.zeros(heads.num_heads)
    for x in seqs.split(batch):
        hidden, logits = capture_hidden(target, x)
        best = logits.argmax(-1)  # [b, L]
        top = heads.train_logits(hidden, x).topk(ranks, -1).indices  # [b, L, heads, ranks]
        length = x.shape[1]
        for d in range(heads.num_heads):
            span = length - 1 - d
            if span <= 0:
                continue
            want = best[:, 1 + d : 1 + d + span]
            hits[d] += (top[:, :span, d] == want[..., None]).float().sum((0, 1)).cpu()
            counts[d] += want.numel()
    return (hits / counts.clamp(min=1)[:, None]).tolist()


def capture_hidden(target, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states [b, L, dim] (the LM head's input) and logits [b, L, vocab] of a plain forward."""
    got = {}
    hook = listen_hidden(target, lambda h: got.setdefault("h", h))
    try:
        logits = target(x).logits
    finally:
        hook.remove()
    return got["h"], logits


def train(args):
    from accelerate import Accelerator
    from tqdm import tqdm

    from ..loading import load_causal_lm

    torch.manual_seed(args.seed)
    acc = Accelerator(mixed_precision=args.mixed_precision, cpu=args.cpu)
    target = load_causal_lm(args.target, acc.device, "float32", what="target")
    target.requires_grad_(False)
    os.makedirs(args.out, exist_ok=True)
    data_path = os.path.join(args.out, "selfdistill.pt")
    if os.path.isfile(data_path):
        seqs = torch.load(data_path)
    else:
        mix = TokenMix(args.data, args.prompt_len + 1, seed=args.seed)
        seqs = self_distillation_data(target, mix, args.sequences, args.prompt_len, args.new_tokens,
                                      args.temperature, args.gen_batch, args.seed)
        torch.save(seqs, data_path + ".tmp")
        os.replace(data_path + ".tmp", data_path)
    held, seqs = seqs[: args.heldout_sequences], seqs[args.heldout_sequences :]
    hidden_size = target.get_output_embeddings().weight.shape[1]
    config = {"hidden_size": hidden_size, "num_heads": args.num_heads, "target": os.path.basename(
        args.target.rstrip("/"))}
    heads = KINDS[args.kind](config, target.get_output_embeddings())
    ckpt = os.path.join(args.out, "checkpoint.pt")
    state = {"step": 0, "seconds": 0.0, "log": [], "args": plain_args(args)}
    optimizer = torch.optim.AdamW(heads.parameters(), lr=args.lr, weight_decay=0.0)
    if os.path.isfile(ckpt):
        saved = torch.load(ckpt)
        heads.load_state_dict(saved["heads"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
    heads, optimizer = acc.prepare(heads, optimizer)
    bar = tqdm(total=args.steps, initial=state["step"], desc=f"{args.kind} heads")
    g = torch.Generator().manual_seed(args.seed)
    t_start = time.time()
    while state["step"] < args.steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(state["step"], args.steps, args.lr, args.warmup)
        idx = torch.randint(0, len(seqs), (args.batch,), generator=g)
        x = seqs[idx].to(acc.device)
        t0 = time.time()
        with torch.no_grad(), acc.autocast():
            hidden, target_logits = capture_hidden(target, x)
        with acc.autocast():
            loss, per_head = distill_loss(acc.unwrap_model(heads).train_logits(hidden.float(), x), target_logits)
        acc.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["seconds"] += time.time() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        done = state["step"] >= args.steps or (time.time() - t_start) / 60 > args.max_minutes
        if state["step"] % args.eval_every == 0 or done:
            state["log"].append({"step": state["step"], "loss": loss.item(), "kl_per_head": per_head})
            torch.save({"heads": acc.unwrap_model(heads).state_dict(), "optimizer": optimizer.state_dict(),
                        "state": state}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
        if done:
            break
    bar.close()
    final = acc.unwrap_model(heads)
    final.config["topk_accuracy"] = topk_accuracy(final, target, held.to(acc.device))
    final.config["training"] = {"steps": state["step"], "seconds": round(state["seconds"], 1),
                                "sequences": len(seqs), "log": state["log"][-5:]}
    final.save(args.out)
    return final


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--target", required=True, help="the frozen target (HF folder)")
    p.add_argument("--kind", default="medusa", choices=sorted(KINDS))
    p.add_argument("--data", required=True, help="token files for prompts: a.bin:1,b.bin:1")
    p.add_argument("--out", required=True, help="heads folder (also holds the generated data and checkpoints)")
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--sequences", type=int, default=512, help="target continuations to train on")
    p.add_argument("--heldout-sequences", type=int, default=32, help="of those, kept for calibration")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=1.0, help="for the target's continuations (0: greedy)")
    p.add_argument("--gen-batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--max-minutes", type=float, default=1e9)
    p.add_argument("--mixed-precision", default="bf16", choices=["no", "bf16", "fp16"])
    p.add_argument("--cpu", action="store_true")
