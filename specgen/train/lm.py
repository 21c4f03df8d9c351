"""Train a Llama-architecture causal LM on token files with `accelerate`: resumable, with a progress bar and a
periodic held-out loss. The same recipe trains every modality's LM (text, speech, image and rap tokens).

    specgen train-lm --preset text-30m --train data/text/train.code.bin:1,data/text/train.prose.bin:1 \\
        --heldout data/text/heldout.code.bin,data/text/heldout.prose.bin --tokenizer models/zoo/text-tokenizer \\
        --out runs/text-30m --steps 6000 --max-minutes 60
    specgen train-lm ... --export models/zoo/text-30m      # write the HF checkpoint (bf16) from the last save
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass

import torch

from ..utils import resolve_mixed_precision
from .data import SequenceSet, TokenMix

# name: (hidden, layers, heads, kv heads, intermediate)
PRESETS = {
    "draft-5m": (256, 4, 4, 4, 576),
    "text-12m": (384, 6, 6, 6, 1024),
    "text-30m": (512, 8, 8, 8, 1376),
    "text-50m": (640, 8, 10, 10, 1728),
}


def llama_config(preset: str, vocab: int, context: int, **special):
    from transformers import LlamaConfig

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)}")
    hidden, layers, heads, kv, inter = PRESETS[preset]
    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv, intermediate_size=inter, max_position_embeddings=context,
                       tie_word_embeddings=True, rope_theta=10000.0, **special)


@dataclass(kw_only=True)
class Schedule:
    """What `fit` runs by, shared by the LM recipes: `out` the run folder (reruns resume from it), `steps` of
    `batch` windows of `seq` tokens, the learning rate `lr` after `warmup` steps, an evaluation on `eval_windows`
    held-out windows every `eval_every` steps, a checkpoint every `save_minutes`, a saved stop after
    `max_minutes`; `mixed_precision` auto, no, bf16 or fp16 (auto: bf16 on CUDA or a CPU with native bf16, else
    none); `cpu`: train on the CPU even where CUDA is present."""

    out: str
    steps: int
    batch: int = 8
    seq: int
    lr: float
    warmup: int
    seed: int = 0
    eval_every: int = 250
    eval_windows: int
    save_minutes: float = 10
    max_minutes: float = 1e9
    mixed_precision: str = "auto"
    cpu: bool = False


@dataclass(kw_only=True)
class LMConfig(Schedule):
    """A causal-LM training run (`specgen train-lm`): token files with weights (a.bin:1,b.bin:1) or a .pt file of
    sequences with loss masks (speech, image, rap) for `train` and `heldout`; a `preset` shape; `tokenizer` (text)
    or `vocab` (other tokens, with the project's special ids pad 0, <s> 1, </s> 2); `context` positions; `init` an
    exported model to go on from when `out` has no checkpoint; the rest as in `Schedule`."""

    train: str
    heldout: str
    preset: str = "text-30m"
    tokenizer: str | None = None
    vocab: int | None = None
    context: int = 1024
    init: str | None = None
    steps: int = 6000
    seq: int = 512
    lr: float = 1e-3
    warmup: int = 200
    eval_windows: int = 64


def plain_settings(cfg) -> dict:
    """A run's settings (a config dataclass) as JSON-able values (for the checkpoint's state)."""
    return {k: v for k, v in asdict(cfg).items() if isinstance(v, (int, float, str, bool, type(None)))}


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def save_checkpoint(out: str, model, optimizer, state: dict):
    """Write to a temporary folder, then swap it in: a killed run never leaves a half-written checkpoint."""
    tmp, final = os.path.join(out, "checkpoint.tmp"), os.path.join(out, "checkpoint")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    torch.save(optimizer.state_dict(), os.path.join(tmp, "optimizer.pt"))
    with open(os.path.join(tmp, "state.json"), "w") as f:
        json.dump(state, f, indent=1)
    old = final + ".old"
    if os.path.isdir(final):
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


@torch.no_grad()
def heldout_loss(model, held: tuple, batch: int, device) -> float:
    """Mean loss over fixed held-out (inputs, labels, mask)."""
    model.eval()
    x, labels, mask = held
    losses = []
    for i in range(0, len(x), batch):
        m = mask[i : i + batch].to(device) if mask is not None else None
        losses.append(model(input_ids=x[i : i + batch].to(device), labels=labels[i : i + batch].to(device),
                            attention_mask=m).loss.item())
    model.train()
    return sum(losses) / len(losses)


def open_data(spec: str, seq: int, seed: int, pad_id: int):
    """Token files (random windows; labels are the inputs) or a .pt file of sequences with loss masks."""
    if spec.endswith(".pt"):
        return SequenceSet(spec, seed, pad_id)
    return TokenMix(spec, seq, seed=seed)


def batch_of(data, step: int, size: int, seed: int | None = None):
    """inputs, labels, attention mask (None for token windows) for one step."""
    if isinstance(data, SequenceSet):
        return data.batch(step, size, seed)
    x = data.batch(step, size, seed)
    return x, x, None


def train(cfg: LMConfig):
    """Train (or resume) the run `cfg` describes; returns its state."""
    from accelerate import Accelerator
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    acc = Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision, cfg.cpu), cpu=cfg.cpu)
    if not cfg.tokenizer and not cfg.vocab:
        raise ValueError("give a tokenizer (text; --tokenizer) or a vocabulary size (other tokens; --vocab)")
    pad, bos, eos = 0, 1, 2
    if cfg.tokenizer:
        tok = AutoTokenizer.from_pretrained(cfg.tokenizer)
        pad, bos, eos = tok.pad_token_id or 0, tok.bos_token_id, tok.eos_token_id
    data = open_data(cfg.train, cfg.seq, cfg.seed, pad)
    heldout = batch_of(open_data(cfg.heldout, cfg.seq, cfg.seed, pad), 0, cfg.eval_windows, seed=4321)
    ckpt = os.path.join(cfg.out, "checkpoint")
    if os.path.isdir(ckpt):
        model = LlamaForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
        state = json.load(open(os.path.join(ckpt, "state.json")))
    elif cfg.init:  # continue from an exported checkpoint (a fresh optimizer; the schedule goes on at its step)
        model = LlamaForCausalLM.from_pretrained(cfg.init, dtype=torch.float32)
        log = os.path.join(cfg.init, "training_log.json")
        state = json.load(open(log)) if os.path.isfile(log) else {"step": 0, "tokens": 0, "seconds": 0.0, "log": []}
        state["args"] = plain_settings(cfg)
    else:
        llama = llama_config(cfg.preset, cfg.vocab or len(tok), cfg.context, bos_token_id=bos, eos_token_id=eos,
                           pad_token_id=pad)
        model = LlamaForCausalLM(llama)
        state = {"step": 0, "tokens": 0, "seconds": 0.0, "log": [], "args": plain_settings(cfg)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.1)
    if os.path.isfile(os.path.join(ckpt, "optimizer.pt")):
        optimizer.load_state_dict(torch.load(os.path.join(ckpt, "optimizer.pt")))
    model, optimizer = acc.prepare(model, optimizer)
    params = sum(p.numel() for p in model.parameters())
    acc.print(f"{cfg.preset}: {params / 1e6:.1f}M parameters, resuming at step {state['step']}")
    def batch_loss(step: int):
        x, labels, mask = (t.to(acc.device) if t is not None else None for t in batch_of(data, step, cfg.batch))
        return model(input_ids=x, labels=labels, attention_mask=mask).loss, {"tokens": x.numel()}

    def evaluate():
        return {"heldout_loss": heldout_loss(acc.unwrap_model(model), heldout, cfg.batch, acc.device)}

    return fit(acc, model, optimizer, state, cfg, batch_loss, evaluate)


def fit(acc, model, optimizer, state: dict, cfg, batch_loss, evaluate) -> dict:
    """The loop every recipe shares: learning-rate schedule, step with clipping, progress bar, evaluation every
    `cfg.eval_every` steps, a checkpoint every `cfg.save_minutes`, and a saved stop after `cfg.max_minutes`
    (`cfg`: the recipe's config, a `Schedule`).
    batch_loss(step) -> (loss, counters to add to the state, e.g. {"tokens": n}); evaluate() -> log fields."""
    from tqdm import tqdm

    model.train()
    t_start = t_save = time.time()
    bar = tqdm(total=cfg.steps, initial=state["step"], disable=not acc.is_main_process, dynamic_ncols=True)
    while state["step"] < cfg.steps:
        for g in optimizer.param_groups:
            g["lr"] = lr_at(state["step"], cfg.steps, cfg.lr, cfg.warmup)
        t0 = time.time()
        loss, counters = batch_loss(state["step"])
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        for key, n in counters.items():
            state[key] = state.get(key, 0) + n
        state["seconds"] += time.time() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{state['tokens'] / max(state['seconds'], 1e-9):.0f}")
        done = state["step"] >= cfg.steps or (time.time() - t_start) / 60 > cfg.max_minutes
        if state["step"] % cfg.eval_every == 0 or done:
            entry = {"step": state["step"], "tokens": state["tokens"], "train_loss": loss.item(),
                     "seconds": round(state["seconds"], 1), **evaluate()}
            state["log"].append(entry)
            acc.print(f"\n{json.dumps(entry)}")
        if done or time.time() - t_save > cfg.save_minutes * 60:
            if acc.is_main_process:
                save_checkpoint(cfg.out, acc.unwrap_model(model), optimizer, state)
            t_save = time.time()
        if done:
            break
    bar.close()
    return state


def export(run_dir: str, tokenizer: str | None, dest: str, dtype: str = "bfloat16"):
    """The run's last checkpoint as a zoo checkpoint: weights in `dtype`, the tokenizer (if any) and the training
    log; files already at `dest` that the export does not write (CARD.md, a vocabulary file) are kept. Written
    to a temporary folder and swapped in."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = os.path.join(run_dir, "checkpoint")
    if not os.path.isdir(ckpt):
        raise ValueError(f"no checkpoint in {run_dir!r}: train first")
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=getattr(torch, dtype))
    tmp = dest.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if tokenizer:
        AutoTokenizer.from_pretrained(tokenizer).save_pretrained(tmp)
    shutil.copy(os.path.join(ckpt, "state.json"), os.path.join(tmp, "training_log.json"))
    if os.path.isdir(dest):
        for name in os.listdir(dest):
            if not os.path.exists(os.path.join(tmp, name)) and os.path.isfile(os.path.join(dest, name)):
                shutil.copy(os.path.join(dest, name), os.path.join(tmp, name))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return model
