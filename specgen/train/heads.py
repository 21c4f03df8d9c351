"""Train draft heads on a frozen target by self-distillation: the target continues prompts from the training
data, and each head learns the target's own distribution for the token it guesses (Medusa-2, Cai et al. 2024,
Sec. 2.3.2; Hydra++, Ankner et al. 2024, teacher loss).

    specgen train-heads --target models/zoo/text-30m --kind medusa --data data/text/train.code.bin:1,... \\
        --out models/zoo/text-30m-heads/medusa
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from ..acceptance import leftover
from ..cached_lm import CachedLM, listen_hidden
from ..drafters.heads import KINDS
from ..loop import generate
from ..sampling import Sampling, draw_distinct
from ..utils import resolve_mixed_precision
from .data import SequenceSet, TokenMix
from .lm import lr_at, plain_args


def prompts_from(data, i: int, size: int, prompt_len: int, seed: int) -> list[list[int]]:
    """Prompts for the target to continue: windows of token files, or the prefixes of a sequence set."""
    if isinstance(data, SequenceSet):
        rng = torch.Generator().manual_seed(seed * 100003 + i)
        picks = torch.randint(len(data.items), (size,), generator=rng).tolist()
        return [data.items[j]["ids"][: data.items[j]["loss_from"]] for j in picks]
    return data.batch(i, size, seed=seed)[:, :prompt_len].tolist()


def prompt_source(args):
    """Where prompts come from: a .pt sequence set (its conditioning prefixes) or token files (windows)."""
    if args.data.endswith(".pt"):
        return SequenceSet(args.data, args.seed)
    return TokenMix(args.data, args.prompt_len + 1, seed=args.seed)


def self_distillation_data(target, data, count: int, prompt_len: int, new_tokens: int, temperature: float,
                           batch: int, seed: int, prompt_seed: int | None = None,
                           guidance: tuple[float, list[int]] | None = None) -> tuple[list[list[int]], list[int]]:
    """`count` sequences: data prompts continued by the target itself (`new_tokens` each, or until EOS), and each
    prompt's length. Prompts are drawn with `prompt_seed` (default `seed`), the continuations with `seed`; with
    `guidance` (scale, unconditioned prompt) the target samples from classifier-free-guided logits, as it will
    when the heads draft for it."""
    from tqdm import tqdm

    from ..guidance import GuidedLM

    lm = CachedLM(target)
    if guidance is not None:
        lm = GuidedLM(lm, guidance[0], lambda prompt: guidance[1])
    gen = torch.Generator(lm.device).manual_seed(seed)
    rows, starts = [], []
    for i in tqdm(range(0, count, batch), desc="target continuations"):
        prompts = prompts_from(data, i, min(batch, count - i), prompt_len, seed if prompt_seed is None else prompt_seed)
        outs = generate(lm, prompts, None, Sampling(temperature) if temperature else Sampling(),
                        max_new_tokens=new_tokens, generator=gen)
        rows += [p + o.token_ids for p, o in zip(prompts, outs)]
        starts += [len(p) for p in prompts]
    return rows, starts


def aligned(head_logits: torch.Tensor, target_logits: torch.Tensor, offsets: list[int] | None = None):
    """Per head j: its guesses at positions t and the target's logits for the same tokens (the target's prediction
    at t + offsets[j]; offsets default to 1, 2, ... for heads that guess t+2, t+3, ...), where both exist.
    head_logits [b, L, heads, V], target_logits [b, L, V]."""
    length = head_logits.shape[1]
    for j, off in enumerate(offsets or range(1, head_logits.shape[2] + 1)):
        span = length - off
        if span > 0:
            yield j, head_logits[:, :span, j], target_logits[:, off : off + span]


LOSSES = ("kl", "tv", "kl+tv")


def distill_loss(head_logits: torch.Tensor, target_logits: torch.Tensor, decay: float = 0.8,
                 offsets: list[int] | None = None, kind: str = "kl"):
    """Sum over heads j of decay**j * the head's distance from the target: KL(target || head j) ("kl"), their total
    variation ("tv"), or both added ("kl+tv"). Returns the loss and each head's mean distance.

    Total variation is what a guess drawn from the head loses under the lossless rule: such a guess is kept with
    probability sum_x min(p(x), q(x)) = 1 - TV(p, q) (DistillSpec, Zhou et al. 2024, trains drafts on it). KL
    spreads a head's mass over everything the target might say; TV rewards overlap alone."""
    if kind not in LOSSES:
        raise ValueError(f"unknown distillation loss {kind!r}: use one of {', '.join(LOSSES)}")
    total, per_head = 0.0, []
    for i, head, teacher in aligned(head_logits, target_logits, offsets):
        log_q, log_p = F.log_softmax(head.float(), -1), F.log_softmax(teacher.float(), -1)  # shared by both terms
        kl = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1).mean() if kind != "tv" else 0.0
        tv = 0.5 * (log_q.exp() - log_p.exp()).abs().sum(-1).mean() if kind != "kl" else 0.0
        loss = kl + tv
        per_head.append(loss.item())
        total = total + decay**i * loss
    return total, per_head


class Discriminator(torch.nn.Module):
    """KOALA's adversary: tells the target's next-token distribution from a head's, given the hidden state."""

    def __init__(self, dim: int, vocab: int):
        super().__init__()
        self.proj = torch.nn.Linear(vocab, dim, bias=False)
        self.net = torch.nn.Sequential(torch.nn.Linear(2 * dim, dim), torch.nn.SiLU(), torch.nn.Linear(dim, 1))

    def forward(self, hidden: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([hidden, self.proj(probs)], -1)).squeeze(-1)


def discriminator_loss(disc: Discriminator, hidden, head_logits, target_logits):
    """KOALA (Zhang et al. 2024, Sec. 3.2): the target's distributions are real, the heads' (detached) fake."""
    bce, loss = F.binary_cross_entropy_with_logits, 0.0
    for _, head, teacher in aligned(head_logits, target_logits):
        h = hidden[:, : head.shape[1]].float()
        r, f = disc(h, teacher.float().softmax(-1)), disc(h, head.detach().float().softmax(-1))
        loss = loss + bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
    return loss


def fooling_loss(disc: Discriminator, hidden, head_logits, target_logits):
    """The heads' adversarial loss: how well their distributions pass for the target's."""
    loss = 0.0
    for _, head, _ in aligned(head_logits, target_logits):
        g = disc(hidden[:, : head.shape[1]].float(), head.float().softmax(-1))
        loss = loss + F.binary_cross_entropy_with_logits(g, torch.ones_like(g))
    return loss


def parse_rule(rule: str) -> tuple[str, int]:
    """'greedy', 'sample', 'tolerance:K' -> (name, K); K is 1 unless given."""
    name, _, k = rule.partition(":")
    if name not in ("greedy", "sample", "drawn", "tolerance") or (k and not k.isdigit()) or (name != "tolerance" and k):
        raise ValueError(f"unknown calibration rule {rule!r}: use greedy, sample, drawn or tolerance:K (K >= 1)")
    return name, int(k or 1)


@torch.no_grad()
def rule_accuracy(heads, target, seqs: torch.Tensor, rules: list[str], ranks: int = 8, batch: int = 8,
                  start: torch.Tensor | None = None, temperature: float = 1.0,
                  guidance: tuple[float, list[int]] | None = None) -> dict[str, list[list[float]]]:
    """table[rule][d][r]: how often the acceptance walk takes head d's rank-r token, per rule, measured on target
    continuations `seqs` [n, L] (positions before `start` [n], the prompts, are left out). These shape the sparse
    candidate tree, so each rule gets the tree that suits it (Medusa's construction, Sec. 2.1.2, needs one
    probability per child that the walk takes it):
    - greedy: the rank-r token is the target's argmax;
    - sample (lossless rule, at `temperature`): the target's probability of the rank-r token, which is exactly the
      chance that recursive rejection over distinct deterministic children accepts it;
    - drawn (the same rule over children drawn from the head, `draw_distinct`): the chance that recursive
      rejection takes the r-th drawn child, for one draw of the children per position (`drawn_takes`);
    - tolerance:K (VADUSA): the rank-r token is in the target's top K and the target ranks it above every other
      guess of that head (the walk follows the accepted child the target ranks highest).
    With `guidance` the target's logits are the guided ones (`target_view`)."""
    parsed = {r: parse_rule(r) for r in rules}
    generator = torch.Generator(seqs.device).manual_seed(0)  # the children `drawn` draws
    offsets = heads.offsets
    hits = {r: torch.zeros(len(offsets), ranks) for r in rules}
    counts = torch.zeros(len(offsets))
    for i in range(0, len(seqs), batch):
        x = seqs[i : i + batch]
        hidden, logits = target_view(target, x, guidance, None if start is None else start[i : i + batch])
        logits = logits.float()
        head_logits = heads.train_logits(hidden, x).float()  # [b, L, heads, V]
        for d, drafted, want in aligned(head_logits, logits, offsets):  # drafted and want [b, span, V]
            guess = drafted.topk(ranks, -1).indices  # [b, span, ranks]
            span = guess.shape[1]
            keep = torch.ones(x.shape[0], span, dtype=torch.bool, device=x.device)
            if start is not None:  # position t guesses t + 1 + offset: count it once that token is generated
                pos = torch.arange(span, device=x.device)[None, :] + 1 + offsets[d]
                keep = pos >= start[i : i + batch, None].to(x.device)
            picked = want.gather(-1, guess)  # [b, span, ranks] the target's logit of each guess
            rank = (want[..., None, :] > picked[..., None]).sum(-1)  # how many tokens the target scores higher
            for r, (name, k) in parsed.items():
                if name == "sample":
                    took = (want / temperature).softmax(-1).gather(-1, guess)
                elif name == "drawn":  # one row at a time: it holds [span, ranks, V] tensors
                    took = torch.cat([drawn_takes((w / temperature).softmax(-1), (g / temperature).softmax(-1),
                                                  ranks, generator) for w, g in zip(want.split(1), drafted.split(1))])
                else:
                    ok = rank < k
                    best = rank.masked_fill(~ok, 1 << 30).argmin(-1, keepdim=True)  # the child the walk takes
                    took = torch.zeros_like(picked).scatter_(-1, best, 1.0) * ok
                hits[r][d] += (took * keep[..., None]).sum((0, 1)).cpu()
            counts[d] += keep.sum().cpu()
    return {r: (h / counts.clamp(min=1)[:, None]).tolist() for r, h in hits.items()}


def drawn_takes(p: torch.Tensor, q: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """For n children drawn from q [..., V] without replacement (`draw_distinct`, one draw), the probability that
    recursive rejection against p [..., V] (`accept_sample`) takes each of them [..., n]: child r is reached when
    every earlier one is rejected, and then taken with min(1, p_r(x_r) / q_r(x_r)), p_r the residual after the
    earlier rejections."""
    tokens, q_r, ok = draw_distinct(q, n, generator)
    took, reach = torch.zeros(ok.shape, device=p.device), torch.ones(ok.shape[:-1], device=p.device)
    for r in range(n):
        qr, x = q_r[..., r, :], tokens[..., r : r + 1]
        qx = qr.gather(-1, x)
        take = (p.gather(-1, x) / torch.where(qx > 0, qx, 1.0)).clamp(max=1.0)[..., 0] * ok[..., r]
        took[..., r], reach = reach * take, reach * (1 - take)
        p = leftover(p, qr)
    return took


def calibration(heads, target, seqs: torch.Tensor, rules: list[str], start: torch.Tensor | None = None,
                temperature: float = 1.0, guidance: tuple[float, list[int]] | None = None) -> dict:
    """The heads.json entries that shape trees: `topk_accuracy` (greedy) and `rule_accuracy` per other rule (and,
    for Hawk heads, `vertical_rates`)."""
    rules = ["greedy", *[r for r in rules if r != "greedy"]]
    tables = rule_accuracy(heads, target, seqs, rules, start=start, temperature=temperature, guidance=guidance)
    greedy = tables.pop("greedy")
    out = {"topk_accuracy": greedy, "rule_accuracy": {**heads.config.get("rule_accuracy", {}), **tables}}
    if heads.kind == "hawk":
        out["vertical_rates"] = {**heads.config.get("vertical_rates", {}),
                                 **vertical_rates(heads, target, seqs, rules, start, temperature, guidance)}
    return out


@torch.no_grad()
def vertical_rates(heads, target, seqs: torch.Tensor, rules: list[str], start: torch.Tensor | None = None,
                   temperature: float = 1.0, guidance: tuple[float, list[int]] | None = None, batch: int = 8) -> dict:
    """For Hawk heads, per rule and vertical head d: how often the walk takes d's guess for a position when it
    agrees with the first horizontal head's guess for it, and when it differs (rates["sample"]["agree"][d]). A
    vertical guess that differs from the horizontal favourite is right far less often than its head's overall
    rate, one that agrees more often; the drafter scores cached guesses with these. Tolerance rules count a guess
    in the target's top K. Hawk's cached guesses are never drawn, so `drawn` gets no entry."""
    parsed = {r: parse_rule(r) for r in rules if r != "drawn"}
    n_h, w, n_v = heads.num_heads, heads.config["width"], heads.config["vertical"]
    hits = {r: torch.zeros(2, n_v) for r in parsed}  # [agree, differ] x vertical head
    counts = torch.zeros(2, n_v)
    for i in range(0, len(seqs), batch):
        x = seqs[i : i + batch]
        hidden, logits = target_view(target, x, guidance, None if start is None else start[i : i + batch])
        guess = heads.train_logits(hidden, x).argmax(-1)  # [b, L, heads]: position t guesses t + 1 + offset
        for d in range(n_v):
            off = w * (d + 1)
            if max(2, 1 + off) >= x.shape[1]:
                continue
            q = torch.arange(max(2, 1 + off), x.shape[1], device=x.device)  # positions both guess
            h, v = guess[:, q - 2, 0], guess[:, q - 1 - off, n_h + d]
            want = logits[:, q - 1].float()  # the target's distribution for the token at q
            keep = torch.ones_like(v, dtype=torch.bool)
            if start is not None:
                keep = q[None, :] >= start[i : i + batch, None].to(x.device)
            agree = (v == h) & keep
            differ = (v != h) & keep
            for r, (name, k) in parsed.items():
                if name == "sample":
                    took = (want / temperature).softmax(-1).gather(-1, v[..., None])[..., 0]
                else:  # greedy is the top 1
                    took = ((want > want.gather(-1, v[..., None])).sum(-1) < k).float()
                hits[r][0, d] += (took * agree).sum().cpu()
                hits[r][1, d] += (took * differ).sum().cpu()
            counts[0, d] += agree.sum().cpu()
            counts[1, d] += differ.sum().cpu()
    return {r: dict(zip(("agree", "differ"), (h / counts.clamp(min=1)).tolist())) for r, h in hits.items()}


def calibrate(args):
    """Measure trained heads on fresh target continuations of the data's prompts and write their tree tables into
    heads.json (weights untouched)."""
    from ..loading import load_causal_lm
    from ..drafters.heads import load_heads, write_config

    for r in args.rules:
        parse_rule(r)
    target = load_causal_lm(args.target, "cpu" if args.cpu else None, "float32", what="target", narrow=True)
    heads = load_heads(args.heads, target, narrow=True)
    guidance = guidance_of(args)
    device = next(target.parameters()).device
    rows, starts = self_distillation_data(target, prompt_source(args), args.sequences, args.prompt_len,
                                          args.new_tokens, args.temperature, args.gen_batch, args.seed,
                                          prompt_seed=args.seed + 1, guidance=guidance)  # other prompts than training's
    width = max(len(r) for r in rows)
    seqs = torch.tensor([r + [r[-1]] * (width - len(r)) for r in rows], device=device)  # pad: end of row
    start = torch.tensor(starts, device=device)
    tables = calibration(heads, target, seqs, args.rules, start, temperature=args.temperature or 1.0,
                         guidance=guidance)
    if args.only_rules and "greedy" not in args.rules:  # add the named tables, leave the greedy one as it was
        tables.pop("topk_accuracy")
    write_config(args.heads, {**tables, **({"cpu_tree_size": args.cpu_tree_size} if args.cpu_tree_size else {})})
    for rule, table in [("greedy", tables.get("topk_accuracy")), *tables["rule_accuracy"].items()]:
        if table is None or (args.only_rules and rule not in args.rules):
            continue
        print(f"{rule}: rank-0 per head {[round(row[0], 3) for row in table]}")


def add_calibrate_arguments(p: argparse.ArgumentParser):
    p.add_argument("--target", required=True, help="the target the heads were trained on (HF folder)")
    p.add_argument("--heads", required=True, help="heads folder; its heads.json gains the tables")
    p.add_argument("--data", required=True, help="prompts: token files or a .pt sequence set (held-out data)")
    p.add_argument("--rules", nargs="+", default=["sample"],
                   help="greedy, sample, drawn (sample over children drawn from the heads), tolerance:K")
    p.add_argument("--only-rules", action="store_true",
                   help="write only the --rules tables: keep the greedy table (unless greedy is named) and the rest")
    p.add_argument("--sequences", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0, help="the continuations' (and `sample`'s) temperature")
    p.add_argument("--gen-batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    add_cpu_tree_size(p)
    add_guidance(p)
    p.add_argument("--cpu", action="store_true")


def add_guidance(p: argparse.ArgumentParser):
    p.add_argument("--cfg-scale", type=float, default=1.0,
                   help="classifier-free guidance the heads will draft for (1: none): the target's continuations are "
                        "sampled from, and the heads distilled towards, guided logits")
    p.add_argument("--uncond-prompt", help="with --cfg-scale: the token ids of the unconditioned prompt that replaces "
                                           "each row's own, e.g. '1,5,3' (an image model's '<s> <null> <sep>')")


def guidance_of(args) -> tuple[float, list[int]] | None:
    """(scale, unconditioned prompt ids) from --cfg-scale and --uncond-prompt, or None without guidance."""
    if args.cfg_scale == 1.0:
        return None
    if args.cfg_scale < 0:
        raise ValueError(f"--cfg-scale must be >= 0 (1 is no guidance), got {args.cfg_scale}")
    ids = (args.uncond_prompt or "").replace(",", " ").split()
    if not ids or not all(t.isdigit() for t in ids):
        raise ValueError(f"--cfg-scale {args.cfg_scale} needs --uncond-prompt: the unconditioned prompt's token ids, "
                         f"e.g. --uncond-prompt 1,5,3 (got {args.uncond_prompt!r})")
    return args.cfg_scale, [int(t) for t in ids]


def add_cpu_tree_size(p: argparse.ArgumentParser):
    p.add_argument("--cpu-tree-size", type=int,
                   help="store the tree size measured best for these heads on a CPU (heads.json: cpu_tree_size)")


def capture_hidden(target, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states [b, L, dim] (the LM head's input) and logits [b, L, vocab] of a plain forward."""
    got = {}
    hook = listen_hidden(target, lambda h: got.setdefault("h", h))
    try:
        logits = target(x).logits
    finally:
        hook.remove()
    return got["h"], logits


def target_view(target, x: torch.Tensor, guidance: tuple[float, list[int]] | None = None,
                starts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What the heads learn from: the final hidden states [b, L, dim] of sequences x [b, L] and the target's
    logits [b, L, vocab]. With guidance (scale, unconditioned prompt) the logits that predict each row's tokens
    from `starts[b]` (its prompt length) on are guided, uncond + scale * (cond - uncond), with the unconditioned
    logits from the same continuation after the unconditioned prompt; the heads read the conditioned states."""
    hidden, logits = capture_hidden(target, x)
    if guidance is None:
        return hidden, logits
    if starts is None:
        raise ValueError("guided targets need each sequence's prompt length")
    scale, uncond = guidance
    b, length = x.shape
    u, starts = len(uncond), starts.to(x.device)
    # the unconditioned twin of row i: uncond + x[i, start_i:], right-padded with its own last token
    shift = torch.arange(length - int(starts.min()), device=x.device)[None, :] + starts[:, None]
    twin = torch.cat([torch.tensor(uncond, device=x.device).expand(b, u),
                      x.gather(1, shift.clamp(max=length - 1))], 1)
    free = capture_hidden(target, twin)[1]
    # conditioned position p (p >= start - 1) predicts what unconditioned position p - start + u predicts
    at = (torch.arange(length, device=x.device)[None, :] - starts[:, None] + u).clamp(0, twin.shape[1] - 1)
    free = free.gather(1, at[..., None].expand(-1, -1, free.shape[-1])).float()
    guided = free + scale * (logits.float() - free)
    keep = torch.arange(length, device=x.device)[None, :] >= starts[:, None] - 1
    return hidden, torch.where(keep[..., None], guided, logits.float()).to(logits.dtype)


def warm_start(heads, path: str) -> list[str]:
    """Start `heads` from a trained head set of the same kind and width (`train-heads --init DIR`); returns the
    names of the tensors that were filled. Tensors of the same name and shape are copied. A head set can also
    grow: a new Hydra++ head i beyond the old count starts as the old last head moved one token further, i.e.
    its input layer reads the context and the last old-count tokens of its path with the old head's weights
    (the first tokens get zero weights) and its residual stack is the old last head's."""
    from safetensors.torch import load_file

    weights = os.path.join(path, "heads.safetensors")
    if not os.path.isfile(weights):
        raise ValueError(f"--init {path}: no heads.safetensors there; name a folder written by train-heads")
    with open(os.path.join(path, "heads.json"), encoding="utf-8") as f:
        kind = json.load(f).get("kind")
    if kind != heads.kind:
        raise ValueError(f"--init {path}: those are {kind} heads and these are {heads.kind}; start from the same kind")
    old = {k: v.float() for k, v in load_file(weights).items()}
    state, filled = heads.state_dict(), []
    last = sum(1 for k in old if k.startswith("inputs.") and k.endswith(".weight")) - 1
    for name, t in state.items():
        src = old.get(name)
        if src is None and last >= 0 and name.startswith(("inputs.", "stacks.")):
            part = name.split(".")
            src = old.get(".".join([part[0], str(last)] + part[2:]))
            if src is not None and part[0] == "inputs" and part[-1] == "weight":
                d = t.shape[0]
                grown = torch.zeros_like(t)
                grown[:, :d] = src[:, :d]  # the context
                grown[:, t.shape[1] - (src.shape[1] - d):] = src[:, d:]  # the most recent tokens of the path
                src = grown
        if src is not None and src.shape == t.shape:
            state[name] = src.to(t.dtype)
            filled.append(name)
    if not filled:
        raise ValueError(f"--init {path}: none of its tensors fit these heads (another kind or hidden size?)")
    heads.load_state_dict(state)
    return filled


def train(args):
    from accelerate import Accelerator
    from tqdm import tqdm

    from ..loading import load_causal_lm

    torch.manual_seed(args.seed)
    acc = Accelerator(mixed_precision=resolve_mixed_precision(args.mixed_precision, args.cpu), cpu=args.cpu)
    target = load_causal_lm(args.target, acc.device, "float32", what="target", narrow=True)
    target.requires_grad_(False)
    os.makedirs(args.out, exist_ok=True)
    guidance = guidance_of(args)
    data_path = os.path.join(args.out, "selfdistill.pt")
    if os.path.isfile(data_path):
        saved = torch.load(data_path)
        rows, starts = (saved["rows"], saved["starts"]) if isinstance(saved, dict) else (saved, None)
        if guidance is not None and starts is None:
            raise ValueError(f"{data_path} was generated without prompt lengths, which guided training needs: "
                             f"delete it to generate the data again")
    else:
        rows, starts = self_distillation_data(target, prompt_source(args), args.sequences, args.prompt_len,
                                              args.new_tokens, args.temperature, args.gen_batch, args.seed,
                                              guidance=guidance)
        torch.save({"rows": rows, "starts": starts, "guidance": guidance}, data_path + ".tmp")
        os.replace(data_path + ".tmp", data_path)
    longest = max(len(r) for r in rows)
    keep = [i for i, r in enumerate(rows) if 2 * len(r) >= longest]  # rows cut short by an early EOS teach little
    width = min(len(rows[i]) for i in keep)  # one length, so batches need no padding
    seqs = torch.tensor([rows[i][:width] for i in keep])
    start = torch.tensor([starts[i] for i in keep]) if starts is not None else None
    held, seqs = seqs[: args.heldout_sequences], seqs[args.heldout_sequences :]
    held_start, start = (None, None) if start is None else (start[: args.heldout_sequences],
                                                            start[args.heldout_sequences :])
    hidden_size = target.get_output_embeddings().weight.shape[1]
    config = {"hidden_size": hidden_size, "num_heads": args.num_heads, "target": os.path.basename(
        args.target.rstrip("/"))}
    if args.layers:
        config["layers"] = args.layers
    if args.kind == "koala":
        config["adversarial_weight"] = args.adversarial_weight
    if args.kind == "hawk":
        config.update(horizontal=args.horizontal, width=args.width)
    if guidance is not None:
        config["guidance"] = {"cfg_scale": guidance[0], "uncond_prompt": guidance[1]}
    if args.cpu_tree_size:
        config["cpu_tree_size"] = args.cpu_tree_size
    heads = KINDS[args.kind](config, target)
    if args.init:
        print(f"warm start: {len(warm_start(heads, args.init))} tensors from {args.init}")
    ckpt = os.path.join(args.out, "checkpoint.pt")
    state = {"step": 0, "seconds": 0.0, "log": [], "args": plain_args(args)}
    optimizer = torch.optim.AdamW(heads.parameters(), lr=args.lr, weight_decay=0.0)
    if os.path.isfile(ckpt):
        saved = torch.load(ckpt)
        heads.load_state_dict(saved["heads"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
    adversarial = args.kind == "koala" and args.adversarial_weight > 0
    if adversarial:
        disc = Discriminator(hidden_size, target.get_output_embeddings().weight.shape[0])
        d_opt = torch.optim.AdamW(disc.parameters(), lr=args.lr)
        if os.path.isfile(ckpt) and "disc" in saved:
            disc.load_state_dict(saved["disc"])
            d_opt.load_state_dict(saved["d_opt"])
        disc, d_opt = acc.prepare(disc, d_opt)
    heads, optimizer = acc.prepare(heads, optimizer)
    vocab = target.get_output_embeddings().weight.shape[0]
    cached = None  # the frozen target's view of every training sequence, computed once when it fits
    if seqs.numel() * (hidden_size + vocab) * 4 <= args.cache_gb * 2**30:
        with torch.no_grad(), acc.autocast():
            views = [target_view(target, seqs[i : i + args.batch].to(acc.device), guidance,
                                 None if start is None else start[i : i + args.batch])
                     for i in range(0, len(seqs), args.batch)]
        cached = tuple(torch.cat(v) for v in zip(*views))  # hidden [n, L, dim], logits [n, L, vocab]
    bar = tqdm(total=args.steps, initial=state["step"], desc=f"{args.kind} heads")
    g = torch.Generator().manual_seed(args.seed)
    t_start = time.time()
    while state["step"] < args.steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(state["step"], args.steps, args.lr, args.warmup)
        idx = torch.randint(0, len(seqs), (args.batch,), generator=g)
        x = seqs[idx].to(acc.device)
        t0 = time.time()
        if cached is not None:
            hidden, target_logits = (c[idx.to(c.device)] for c in cached)
        else:
            with torch.no_grad(), acc.autocast():
                hidden, target_logits = target_view(target, x, guidance, None if start is None else start[idx])
        with acc.autocast():
            head_logits = acc.unwrap_model(heads).train_logits(hidden.float(), x)
            loss, per_head = distill_loss(head_logits, target_logits, offsets=acc.unwrap_model(heads).offsets,
                                          kind=args.loss)
        if adversarial:  # the discriminator learns first, then the heads learn to fool the updated one
            d_opt.zero_grad(set_to_none=True)
            with acc.autocast():
                d_loss = discriminator_loss(disc, hidden, head_logits, target_logits)
            acc.backward(d_loss)
            d_opt.step()
            with acc.autocast():
                loss = loss + args.adversarial_weight * fooling_loss(disc, hidden, head_logits, target_logits)
        acc.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["seconds"] += time.time() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        done = state["step"] >= args.steps or (time.time() - t_start) / 60 > args.max_minutes
        if state["step"] % args.eval_every == 0 or done:
            state["log"].append({"step": state["step"], "loss": loss.item(), f"{args.loss}_per_head": per_head})
            save = {"heads": acc.unwrap_model(heads).state_dict(), "optimizer": optimizer.state_dict(),
                    "state": state}
            if adversarial:
                save.update(disc=acc.unwrap_model(disc).state_dict(), d_opt=d_opt.state_dict())
            torch.save(save, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
        if done:
            break
    bar.close()
    final = acc.unwrap_model(heads)
    final.config.update(calibration(final, target, held.to(acc.device), args.rules, held_start,
                                    temperature=args.temperature or 1.0, guidance=guidance))
    final.config["training"] = {"steps": state["step"], "seconds": round(state["seconds"], 1), "loss": args.loss,
                                "sequences": len(seqs), "log": state["log"][-5:]}
    final.save(args.out, dtype=getattr(torch, args.save_dtype))
    return final


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--target", required=True, help="the frozen target (HF folder)")
    p.add_argument("--kind", default="medusa", choices=sorted(KINDS))
    p.add_argument("--data", required=True, help="prompts: token files (a.bin:1,b.bin:1; windows of --prompt-len) "
                                                "or a .pt sequence set (its conditioning prefixes)")
    p.add_argument("--out", required=True, help="heads folder (also holds the generated data and checkpoints)")
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--init", help="start from this trained heads folder (same kind; Hydra++ sets may grow, "
                                  "see warm_start); a checkpoint in --out still takes precedence")
    p.add_argument("--layers", type=int, help="layers per head (default: the kind's own)")
    p.add_argument("--horizontal", default="medusa", choices=["medusa", "hydra"],
                   help="hawk: the horizontal heads' kind (Medusa blocks as in the paper, or Hydra++ heads)")
    p.add_argument("--width", type=int, default=16, help="hawk: tokens per raster row (vertical heads look this far)")
    p.add_argument("--adversarial-weight", type=float, default=0.1,
                   help="koala: weight of the adversarial loss (0 trains the same heads without it)")
    p.add_argument("--sequences", type=int, default=512, help="target continuations to train on")
    p.add_argument("--heldout-sequences", type=int, default=32, help="of those, kept for calibration")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=1.0, help="for the target's continuations (0: greedy)")
    p.add_argument("--gen-batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", default="kl", choices=LOSSES,
                   help="distance from the target each head learns to close: kl, tv (total variation, the chance a "
                        "guess drawn from the head is rejected; for drawn guesses) or kl+tv")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--max-minutes", type=float, default=1e9)
    p.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"],
                   help="autocast; auto: bf16 on CUDA or a CPU with native bf16, else none (fp32)")
    p.add_argument("--save-dtype", default="bfloat16", choices=["bfloat16", "float32"],
                   help="how the finished heads are stored (bf16 halves them; loading casts to the target's dtype)")
    p.add_argument("--rules", nargs="+", default=["sample"],
                   help="acceptance rules to calibrate trees for beside greedy: sample, tolerance:K")
    add_cpu_tree_size(p)
    add_guidance(p)
    p.add_argument("--cache-gb", type=float, default=2.0,
                   help="keep the target's hidden states and logits for all training sequences in memory (computed "
                        "once instead of every step) when they fit in this many GiB")
    p.add_argument("--cpu", action="store_true")
