"""Train draft heads on a frozen target by self-distillation: the target continues prompts from the training
data, and each head learns the target's own distribution for the token it guesses (Medusa-2, Cai et al. 2024,
Sec. 2.3.2; Hydra++, Ankner et al. 2024, teacher loss).

    specgen train-heads --target models/zoo/text-30m --kind medusa --data data/text/train.code.bin:1,... \\
        --out models/zoo/text-30m-heads/medusa
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import torch

from ..acceptance import leftover
from ..cached_lm import CachedLM, listen_hidden
from ..drafters.heads import KINDS
from ..loop import generate
from ..sampling import Sampling, draw_distinct
from ..utils import resolve_mixed_precision
from .data import SequenceSet, TokenMix
from .losses import Discriminator, aligned, discriminator_loss, distill_loss, fooling_loss
from .lm import lr_at, plain_settings


@dataclass(kw_only=True)
class Continuations:
    """The target continuations heads learn from and are calibrated on: `sequences` continuations by the frozen
    `target` (a Hugging Face folder) of `new_tokens` each, at `temperature` (0: greedy), `gen_batch` at a time, of
    prompts from `data` (token files with weights, windows of `prompt_len`, or a .pt sequence set, its
    conditioning prefixes); `rules`: the acceptance rules to calibrate trees for (greedy, sample, drawn,
    tolerance:K); `cpu_tree_size`: the tree size measured best on a CPU, stored with the heads; `cfg_scale` and
    `uncond_prompt`: classifier-free guidance the heads will draft for."""

    target: str
    data: str
    sequences: int
    prompt_len: int = 32
    new_tokens: int
    temperature: float = 1.0
    gen_batch: int
    seed: int = 0
    rules: list[str] = field(default_factory=lambda: ["sample"])
    cpu_tree_size: int | None = None
    cfg_scale: float = 1.0
    uncond_prompt: list[int] | None = None
    cpu: bool = False


@dataclass(kw_only=True)
class HeadsConfig(Continuations):
    """A head-training run (`specgen train-heads`): heads of `kind` distilled from the target's continuations,
    written to `out` (which also keeps the generated data and checkpoints). `init`: a trained heads folder of the
    same kind to start from (`warm_start`); `layers`: per head (default: the kind's own); `horizontal` and
    `width`: Hawk's horizontal head kind and raster row; `adversarial_weight`: KOALA's adversarial loss (0: none);
    `heldout_sequences` of the `sequences` are kept for calibration; `loss`: one of `losses.LOSSES`; `cache_gb`:
    keep the target's view of all training sequences in memory when it fits; `save_dtype`: how the heads are
    stored; `draft_vocab`: guess among a trimmed vocabulary only (`draft_vocabulary`); `selfdistill`: a file of
    ready target continuations to learn from instead of generating them (`read_selfdistill`); the rest as in
    `Continuations`."""

    out: str
    kind: str = "medusa"
    num_heads: int = 4
    init: str | None = None
    layers: int | None = None
    horizontal: str = "medusa"
    width: int = 16
    adversarial_weight: float = 0.1
    sequences: int = 512
    heldout_sequences: int = 32
    new_tokens: int = 128
    gen_batch: int = 32
    steps: int = 1000
    batch: int = 8
    lr: float = 1e-3
    loss: str = "kl"
    warmup: int = 50
    eval_every: int = 100
    max_minutes: float = 1e9
    mixed_precision: str = "auto"
    save_dtype: str = "bfloat16"
    cache_gb: float = 2.0
    draft_vocab: str | None = None
    selfdistill: str | None = None


@dataclass(kw_only=True)
class CalibrateConfig(Continuations):
    """A calibration of trained heads (`specgen calibrate-heads`): the `heads` folder (its heads.json gains the
    tables) measured on fresh continuations for each of `rules`; `only_rules` writes only those tables; the rest as
    in `Continuations`."""

    heads: str
    only_rules: bool = False
    sequences: int = 32
    new_tokens: int = 200
    gen_batch: int = 8


def draft_vocabulary(path: str) -> list[int]:
    """The target ids a trimmed vocabulary keeps: a draft's folder (its config.json's `draft_to_target`, e.g. a
    PARD draft for the same target) or a JSON file holding the list."""
    file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise ValueError(f"--draft-vocab {path}: no such file or folder; name a trimmed draft's folder or a JSON list "
                         f"of target ids")
    with open(file, encoding="utf-8") as f:
        data = json.load(f)
    ids = data.get("draft_to_target") if isinstance(data, dict) else data
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
        raise ValueError(f"--draft-vocab {path}: {file} holds no list of target ids (draft_to_target)")
    return ids


def read_selfdistill(paths: str, eos: int | None, seed: int = 0,
                     bos: int | None = None) -> tuple[list[list[int]], list[int] | None]:
    """Ready continuations as training rows and their prompt lengths (None when unknown): a .pt file as `train`
    saves one ({"rows": [...], "starts": [...]}), or flat files of uint32 target ids (prompt, continuation, EOS,
    one after another, as `modalities.text.distill generate` writes), comma-separated, cut at each EOS, each row
    opened with `bos` when given and missing, and shuffled together with `seed` (so held-out rows come from every
    file)."""
    import numpy as np

    files = paths.split(",")
    for path in files:
        if not os.path.isfile(path):
            raise ValueError(f"--selfdistill {path}: no such file")
    if len(files) == 1 and files[0].endswith(".pt"):
        saved = torch.load(files[0])
        return saved["rows"], saved.get("starts")
    if eos is None:
        raise ValueError(f"--selfdistill {paths}: flat token files need the target's eos_token_id to cut rows")
    rows = []
    for path in files:
        ids = np.fromfile(path, dtype=np.uint32).astype(np.int64)
        rows += [([bos] if bos is not None and r[0] != bos else []) + r.tolist()
                 for r in np.split(ids, np.flatnonzero(ids == eos) + 1) if len(r) > 1]
    if not rows:
        raise ValueError(f"--selfdistill {paths}: no rows in them")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    return [rows[i] for i in order], None


def prompts_from(data, i: int, size: int, prompt_len: int, seed: int) -> list[list[int]]:
    """Prompts for the target to continue: windows of token files, or the prefixes of a sequence set."""
    if isinstance(data, SequenceSet):
        rng = torch.Generator().manual_seed(seed * 100003 + i)
        picks = torch.randint(len(data.items), (size,), generator=rng).tolist()
        return [data.items[j]["ids"][: data.items[j]["loss_from"]] for j in picks]
    return data.batch(i, size, seed=seed)[:, :prompt_len].tolist()


def prompt_source(cfg):
    """Where prompts come from: a .pt sequence set (its conditioning prefixes) or token files (windows)."""
    if cfg.data.endswith(".pt"):
        return SequenceSet(cfg.data, cfg.seed)
    return TokenMix(cfg.data, cfg.prompt_len + 1, seed=cfg.seed)


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
    vocab = target.get_output_embeddings().weight.shape[0]
    batch = max(1, min(batch, int(2**30 // (seqs.shape[1] * vocab * 4))))  # the target's logits within ~1 GB
    offsets = heads.offsets
    hits = {r: torch.zeros(len(offsets), ranks) for r in rules}
    counts = torch.zeros(len(offsets))
    for i in range(0, len(seqs), batch):
        x = seqs[i : i + batch]
        hidden, logits = target_view(target, x, guidance, None if start is None else start[i : i + batch])
        logits = logits.float()
        head_logits = heads.train_logits(hidden, x).float()  # [b, L, heads, V'] over the heads' vocabulary
        descending = (-logits).sort(-1).values  # per position, the target's logits negated and ascending (once)
        vocab_map = heads.vocab_map
        for d, drafted, want in aligned(head_logits, logits, offsets):  # drafted [b, span, V'], want [b, span, V]
            guess = drafted.topk(ranks, -1).indices  # [b, span, ranks] head ids
            guess_t = guess if vocab_map is None else vocab_map.d2t[guess]  # the same as target ids
            span = guess.shape[1]
            keep = torch.ones(x.shape[0], span, dtype=torch.bool, device=x.device)
            if start is not None:  # position t guesses t + 1 + offset: count it once that token is generated
                pos = torch.arange(span, device=x.device)[None, :] + 1 + offsets[d]
                keep = pos >= start[i : i + batch, None].to(x.device)
            picked = want.gather(-1, guess_t)  # [b, span, ranks] the target's logit of each guess
            # how many tokens the target scores higher: the count of -want below -picked
            rank = torch.searchsorted(descending[:, offsets[d] : offsets[d] + span].contiguous(), -picked.contiguous())
            for r, (name, k) in parsed.items():
                if name == "sample":
                    took = (want / temperature).softmax(-1).gather(-1, guess_t)
                elif name == "drawn":  # one row at a time: it holds [span, ranks, V] tensors
                    took = torch.cat([drawn_takes(*folded((w / temperature).softmax(-1), (g / temperature).softmax(-1),
                                                          vocab_map), ranks, generator)
                                      for w, g in zip(want.split(1), drafted.split(1))])
                else:
                    ok = rank < k
                    best = rank.masked_fill(~ok, 1 << 30).argmin(-1, keepdim=True)  # the child the walk takes
                    took = torch.zeros_like(picked).scatter_(-1, best, 1.0) * ok
                hits[r][d] += (took * keep[..., None]).sum((0, 1)).cpu()
            counts[d] += keep.sum().cpu()
    return {r: (h / counts.clamp(min=1)[:, None]).tolist() for r, h in hits.items()}


def folded(p: torch.Tensor, q: torch.Tensor, vocab_map) -> tuple[torch.Tensor, torch.Tensor]:
    """A target distribution p [..., V] and a head's q over its trimmed vocabulary [..., V'] in one space where
    rejection sampling decides the same (`VocabMap.fold`): [..., V' + 1], the unmapped mass in the last slot; as
    they are for a whole vocabulary."""
    if vocab_map is None:
        return p, q
    return vocab_map.fold(p), torch.nn.functional.pad(q, (0, 1))


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


def calibrate(cfg: CalibrateConfig):
    """Measure trained heads on fresh target continuations of the data's prompts and write their tree tables into
    heads.json (weights untouched)."""
    from ..loading import load_causal_lm
    from ..drafters.heads import load_heads, write_config

    for r in cfg.rules:
        parse_rule(r)
    target = load_causal_lm(cfg.target, "cpu" if cfg.cpu else None, "float32", what="target", narrow=True)
    heads = load_heads(cfg.heads, target, narrow=True)
    guidance = guidance_of(cfg)
    device = next(target.parameters()).device
    rows, starts = self_distillation_data(target, prompt_source(cfg), cfg.sequences, cfg.prompt_len,
                                          cfg.new_tokens, cfg.temperature, cfg.gen_batch, cfg.seed,
                                          prompt_seed=cfg.seed + 1, guidance=guidance)  # other prompts than training's
    width = max(len(r) for r in rows)
    seqs = torch.tensor([r + [r[-1]] * (width - len(r)) for r in rows], device=device)  # pad: end of row
    start = torch.tensor(starts, device=device)
    tables = calibration(heads, target, seqs, cfg.rules, start, temperature=cfg.temperature or 1.0,
                         guidance=guidance)
    if cfg.only_rules and "greedy" not in cfg.rules:  # add the named tables, leave the greedy one as it was
        tables.pop("topk_accuracy")
    write_config(cfg.heads, {**tables, **({"cpu_tree_size": cfg.cpu_tree_size} if cfg.cpu_tree_size else {})})
    for rule, table in [("greedy", tables.get("topk_accuracy")), *tables["rule_accuracy"].items()]:
        if table is None or (cfg.only_rules and rule not in cfg.rules):
            continue
        print(f"{rule}: rank-0 per head {[round(row[0], 3) for row in table]}")


def guidance_of(cfg) -> tuple[float, list[int]] | None:
    """(scale, unconditioned prompt ids) from a config's `cfg_scale` and `uncond_prompt`, or None without
    guidance."""
    if cfg.cfg_scale == 1.0:
        return None
    if cfg.cfg_scale < 0:
        raise ValueError(f"--cfg-scale (cfg_scale) must be >= 0 (1 is no guidance), got {cfg.cfg_scale}")
    if not cfg.uncond_prompt:
        raise ValueError(f"cfg_scale {cfg.cfg_scale} needs --uncond-prompt (uncond_prompt): the unconditioned "
                         f"prompt's token ids, e.g. --uncond-prompt 1,5,3")
    return cfg.cfg_scale, list(cfg.uncond_prompt)


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


def train(cfg: HeadsConfig):
    """Train (or resume) the heads `cfg` describes, calibrate them on the held-out continuations and save them;
    returns the heads."""
    from accelerate import Accelerator
    from tqdm import tqdm

    from ..loading import load_causal_lm

    trim = draft_vocabulary(cfg.draft_vocab) if cfg.draft_vocab else None  # (bad input named before any work)
    torch.manual_seed(cfg.seed)
    acc = Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision, cfg.cpu), cpu=cfg.cpu)
    target = load_causal_lm(cfg.target, acc.device, "float32", what="target", narrow=True)
    target.requires_grad_(False)
    os.makedirs(cfg.out, exist_ok=True)
    guidance = guidance_of(cfg)
    data_path = os.path.join(cfg.out, "selfdistill.pt")
    if cfg.selfdistill:
        eos = target.config.eos_token_id
        rows, starts = read_selfdistill(cfg.selfdistill, eos if isinstance(eos, int) else (eos or [None])[0],
                                        cfg.seed, target.config.bos_token_id)
        rows = rows[: cfg.sequences]  # (at most `sequences` of them)
        if guidance is not None and starts is None:
            raise ValueError(f"--selfdistill {cfg.selfdistill} holds no prompt lengths, which guided training needs")
    elif os.path.isfile(data_path):
        saved = torch.load(data_path)
        rows, starts = (saved["rows"], saved["starts"]) if isinstance(saved, dict) else (saved, None)
        if guidance is not None and starts is None:
            raise ValueError(f"{data_path} was generated without prompt lengths, which guided training needs: "
                             f"delete it to generate the data again")
    else:
        rows, starts = self_distillation_data(target, prompt_source(cfg), cfg.sequences, cfg.prompt_len,
                                              cfg.new_tokens, cfg.temperature, cfg.gen_batch, cfg.seed,
                                              guidance=guidance)
        torch.save({"rows": rows, "starts": starts, "guidance": guidance}, data_path + ".tmp")
        os.replace(data_path + ".tmp", data_path)
    longest = max(len(r) for r in rows)
    keep = [i for i, r in enumerate(rows) if 2 * len(r) >= longest]  # rows cut short by an early EOS teach little
    width = min(len(rows[i]) for i in keep)  # one length, so batches need no padding
    seqs = torch.tensor([rows[i][:width] for i in keep])
    start = torch.tensor([starts[i] for i in keep]) if starts is not None else None
    held, seqs = seqs[: cfg.heldout_sequences], seqs[cfg.heldout_sequences :]
    held_start, start = (None, None) if start is None else (start[: cfg.heldout_sequences],
                                                            start[cfg.heldout_sequences :])
    hidden_size = target.get_output_embeddings().weight.shape[1]
    config = {"hidden_size": hidden_size, "num_heads": cfg.num_heads, "target": os.path.basename(
        cfg.target.rstrip("/"))}
    if cfg.layers:
        config["layers"] = cfg.layers
    if cfg.kind == "koala":
        config["adversarial_weight"] = cfg.adversarial_weight
    if cfg.kind == "hawk":
        config.update(horizontal=cfg.horizontal, width=cfg.width)
    if guidance is not None:
        config["guidance"] = {"cfg_scale": guidance[0], "uncond_prompt": guidance[1]}
    if cfg.cpu_tree_size:
        config["cpu_tree_size"] = cfg.cpu_tree_size
    if trim is not None:
        config["draft_to_target"] = trim
    heads = KINDS[cfg.kind](config, target)
    if cfg.init:
        print(f"warm start: {len(warm_start(heads, cfg.init))} tensors from {cfg.init}")
    ckpt = os.path.join(cfg.out, "checkpoint.pt")
    state = {"step": 0, "seconds": 0.0, "log": [], "args": plain_settings(cfg)}
    optimizer = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=0.0)
    if os.path.isfile(ckpt):
        saved = torch.load(ckpt)
        heads.load_state_dict(saved["heads"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
    adversarial = cfg.kind == "koala" and cfg.adversarial_weight > 0
    if adversarial:
        disc = Discriminator(hidden_size, heads.lm_head.weight.shape[0])
        d_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.lr)
        if os.path.isfile(ckpt) and "disc" in saved:
            disc.load_state_dict(saved["disc"])
            d_opt.load_state_dict(saved["d_opt"])
        disc, d_opt = acc.prepare(disc, d_opt)
    own = heads  # (before `prepare` wraps it)
    heads, optimizer = acc.prepare(heads, optimizer)
    vocab = own.lm_head.weight.shape[0]  # what the heads guess among: the target's logits are cut to it

    def view(x, starts):
        hidden, logits = target_view(target, x, guidance, starts)
        return hidden, own.restrict(logits)

    cached = None  # the frozen target's view of every training sequence, computed once when it fits
    if seqs.numel() * (hidden_size + vocab) * 4 <= cfg.cache_gb * 2**30:
        with torch.no_grad(), acc.autocast():
            views = [view(seqs[i : i + cfg.batch].to(acc.device), None if start is None else start[i : i + cfg.batch])
                     for i in tqdm(range(0, len(seqs), cfg.batch), desc="target view")]
        cached = tuple(torch.cat(v) for v in zip(*views))  # hidden [n, L, dim], logits [n, L, vocab]
    bar = tqdm(total=cfg.steps, initial=state["step"], desc=f"{cfg.kind} heads")
    g = torch.Generator().manual_seed(cfg.seed)
    t_start = time.time()
    while state["step"] < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(state["step"], cfg.steps, cfg.lr, cfg.warmup)
        idx = torch.randint(0, len(seqs), (cfg.batch,), generator=g)
        x = seqs[idx].to(acc.device)
        t0 = time.time()
        if cached is not None:
            hidden, target_logits = (c[idx.to(c.device)] for c in cached)
        else:
            with torch.no_grad(), acc.autocast():
                hidden, target_logits = view(x, None if start is None else start[idx])
        with acc.autocast():
            head_logits = acc.unwrap_model(heads).train_logits(hidden.float(), x)
            loss, per_head = distill_loss(head_logits, target_logits, offsets=acc.unwrap_model(heads).offsets,
                                          kind=cfg.loss)
        if adversarial:  # the discriminator learns first, then the heads learn to fool the updated one
            d_opt.zero_grad(set_to_none=True)
            with acc.autocast():
                d_loss = discriminator_loss(disc, hidden, head_logits, target_logits)
            acc.backward(d_loss)
            d_opt.step()
            with acc.autocast():
                loss = loss + cfg.adversarial_weight * fooling_loss(disc, hidden, head_logits, target_logits)
        acc.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["seconds"] += time.time() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        done = state["step"] >= cfg.steps or (time.time() - t_start) / 60 > cfg.max_minutes
        if state["step"] % cfg.eval_every == 0 or done:
            state["log"].append({"step": state["step"], "loss": loss.item(), f"{cfg.loss}_per_head": per_head})
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
    final.config.update(calibration(final, target, held.to(acc.device), cfg.rules, held_start,
                                    temperature=cfg.temperature or 1.0, guidance=guidance))
    final.config["training"] = {"steps": state["step"], "seconds": round(state["seconds"], 1), "loss": cfg.loss,
                                "sequences": len(seqs), "log": state["log"][-5:]}
    final.save(cfg.out, dtype=getattr(torch, cfg.save_dtype))
    return final
