"""The decode loop: prefill, then repeat (propose, verify, accept, commit, emit) until EOS or the budget."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch

from .acceptance import LOSSLESS, get_rule
from .cached_lm import CachedLM
from .drafters import Drafter
from .sampling import Sampling
from .tree import DraftTree, ancestry
from .utils import Timer


@dataclass
class Stats:
    """What one row's decoding cost. Wall time and the phase split are the batch's; mean_accepted is the tokens
    emitted per verification forward (1.0 for `ar`; it counts the target's own next token)."""

    new_tokens: int
    wall_s: float
    tokens_per_s: float
    mean_accepted: float
    target_forwards: int
    draft_forwards: int
    prefill_s: float = 0.0
    draft_s: float = 0.0
    verify_s: float = 0.0
    loop_s: float = 0.0  # the loop's own Python and bookkeeping: wall minus prefill, draft and verify
    acceptance: str = "greedy"  # the acceptance rule used
    lossless: bool = True  # False for lossy rules (typical): the output may differ from the target's own
    accepted_hist: list[int] = field(default_factory=list)  # [i]: verification rounds that accepted i drafts

    def as_dict(self) -> dict:
        return asdict(self)


def accepted_at(hist) -> list[float]:
    """Per position ahead (1, 2, ...): the fraction of rounds whose drafts were accepted at least that far, from
    rounds counted by accepted drafts (`Stats.accepted_hist`, or several summed)."""
    total = sum(hist)
    return [sum(hist[i:]) / total for i in range(1, len(hist))] if total else []


@dataclass
class Generation:
    token_ids: list[int]
    stats: Stats
    finish_reason: str  # "eos", "length" or "stop"


StopFn = Callable[[int, list[int]], "int | None"]  # (row, tokens so far) -> tokens to keep when it should stop


def validate(prompts: list[list[int]], max_new_tokens: int, num_draft_tokens: int):
    """Refuse what the loop cannot do, with the fix in the message."""
    if not prompts:
        raise ValueError("no prompts given: pass at least one prompt")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("a prompt is empty (no tokens): give every prompt at least one token")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not isinstance(num_draft_tokens, int) or num_draft_tokens < 1:
        raise ValueError(f"num_draft_tokens must be an integer >= 1, got {num_draft_tokens!r}")


def stream(target: CachedLM, prompts: list[list[int]], drafter: Drafter | None = None,
           sampling: Sampling = Sampling(), max_new_tokens: int = 128, num_draft_tokens: int = 8,
           eos_token_ids=(), stop: StopFn | None = None, generator: torch.Generator | None = None,
           rule: str | None = None, rule_options: dict | None = None,
           allowed: torch.Tensor | None = None, constraint=None) -> Iterator[tuple[int, list[int]]]:
    """Decode a batch; yields (row, new tokens) as they are accepted and returns one Generation per row.

    Speculative output equals `ar` output: token for token under greedy, in distribution under `sample`.
    `rule_options` go to the acceptance rule (e.g. {"tolerance": 3} for `tolerance`). `allowed` [vocab] bool
    restricts what the target may say (speech tokens only, say): the rest get -inf before any processing.
    `constraint` (e.g. `constraints.SymbolOrder`) bars tokens by what each row has said so far, node by node of
    every verification tree, the same way.
    """
    validate(prompts, max_new_tokens, num_draft_tokens)
    rule_name = rule or ("greedy" if sampling.greedy else "sample")
    accept = get_rule(rule_name)
    if rule_name == "greedy" and not sampling.greedy:
        raise ValueError("greedy acceptance needs temperature 0; with temperature > 0 use rule='sample'")
    if rule_name in ("sample", "typical", "relaxed") and sampling.greedy:
        raise ValueError(f"acceptance rule {rule_name!r} samples: give a temperature > 0, or use rule='greedy'")
    longest = max(len(p) for p in prompts) + max_new_tokens
    target.check_length(longest)
    if drafter is not None:
        drafter.check_length(longest + num_draft_tokens)
    eos = set(eos_token_ids or ())
    n = len(prompts)
    out: list[list[int]] = [[] for _ in range(n)]
    finish = ["length"] * n
    rounds = [0] * n
    hist: list[list[int]] = [[] for _ in range(n)]  # per row: rounds by number of accepted drafts
    timer = Timer(target.device)
    block = None if allowed is None else ~allowed.to(target.device)

    def restrict(logits: torch.Tensor) -> torch.Tensor:
        return logits if block is None else logits.masked_fill(block, float("-inf"))

    t0 = time.perf_counter()
    draft_forwards0 = drafter.forwards if drafter else 0

    def emit(row: int, tokens: list[int]) -> tuple[list[int], bool]:
        """Append a row's new tokens, cut at EOS, the budget or a stop; returns what was kept and if it is done."""
        done = False
        for i, t in enumerate(tokens):
            if t in eos or len(out[row]) + i + 1 >= max_new_tokens:
                finish[row] = "eos" if t in eos else "length"
                tokens, done = tokens[: i + 1], True
                break
        out[row].extend(tokens)
        if stop is not None:
            keep = stop(row, out[row])
            if keep is not None:
                tokens = tokens[: max(0, len(tokens) - (len(out[row]) - keep))]
                del out[row][keep:]
                finish[row], done = "stop", True
        return tokens, done

    rows: list[int] = []  # original index of each live batch row
    if drafter is not None and drafter.needs_hidden:
        target.keep_hidden()
    if max_new_tokens > 0:
        with timer("prefill"):
            logits = restrict(target.prefill(prompts))
            if constraint is not None:
                barred = constraint.block(list(range(n)), [[] for _ in range(n)])[:, 0]
                logits = logits.masked_fill(barred, float("-inf"))
            first = sampling.pick(logits, generator).tolist()
        live = []
        for r in range(n):
            kept, done = emit(r, first[r : r + 1])
            yield r, kept
            if not done:
                live.append(r)
        if drafter is not None and live:
            hidden = target.hidden[live] if drafter.needs_hidden else None  # [live, prompt, dim], left-padded
            drafter.configure(rule_name, block)
            with timer("draft"):
                drafter.start([prompts[r] for r in live], [first[r] for r in live], sampling, target.vocab,
                              target.device, generator, hidden)
        if len(live) < n:
            target.select(torch.tensor(live, dtype=torch.long, device=target.device))
        rows, roots = live, torch.tensor([first[r] for r in live], device=target.device)

    while rows:
        left = [max_new_tokens - len(out[r]) for r in rows]  # tokens each row may still emit
        k = min(num_draft_tokens, max(left) - 1)
        with timer("draft"):
            tree = drafter.propose(k) if drafter is not None and k > 0 else DraftTree.empty(len(rows), target.device)
        tokens, parents, valid = tree.with_root(roots)
        if tokens.shape[1] > 1 and min(left) <= k:  # nodes past a row's budget would be thrown away
            remaining = torch.tensor(left, device=target.device)[:, None]  # (a tree of k drafts is at most k deep)
            valid &= ancestry(parents, valid)[1] < remaining
        with timer("verify"):
            logits = restrict(target.step(tokens, parents, valid))  # [batch, nodes, vocab]
            if constraint is not None:
                logits = logits.masked_fill(constraint.block(rows, [out[r] for r in rows], tokens, parents, valid),
                                            float("-inf"))
        paths, nxt = accept(logits, tokens, parents, valid, tree.q, sampling, generator, **(rule_options or {}))
        target.commit(paths)
        toks = tokens.tolist()
        emitted = [[toks[b][i] for i in path[1:]] + [nxt[b]] for b, path in enumerate(paths)]
        if drafter is not None:
            with timer("draft"):
                drafter.accept(emitted, paths, target.hidden if drafter.needs_hidden else None)
        live = []
        for b, r in enumerate(rows):
            rounds[r] += 1
            n_acc = len(paths[b]) - 1
            hist[r].extend([0] * (n_acc + 1 - len(hist[r])))
            hist[r][n_acc] += 1
            kept, done = emit(r, emitted[b])
            yield r, kept
            if not done:
                live.append(b)
        roots = torch.tensor(nxt, device=target.device)
        if len(live) < len(rows):
            sel = torch.tensor(live, dtype=torch.long, device=target.device)
            target.select(sel)
            if drafter is not None:
                drafter.select(live)
            roots, rows = roots[sel], [rows[b] for b in live]

    wall = time.perf_counter() - t0
    parts = {k: timer.get(k) for k in ("prefill", "draft", "verify")}
    draft_fw = (drafter.forwards if drafter else 0) - draft_forwards0
    results = []
    for r in range(n):
        new = len(out[r])
        stats = Stats(new_tokens=new, wall_s=wall, tokens_per_s=new / wall if wall > 0 else 0.0,
                      mean_accepted=(new - 1) / rounds[r] if rounds[r] else float(new > 0),
                      target_forwards=rounds[r] + (max_new_tokens > 0), draft_forwards=draft_fw,
                      prefill_s=parts["prefill"], draft_s=parts["draft"], verify_s=parts["verify"],
                      loop_s=max(0.0, wall - sum(parts.values())), acceptance=rule_name,
                      lossless=LOSSLESS.get(rule_name, False), accepted_hist=hist[r])
        results.append(Generation(out[r], stats, finish[r]))
    return results


def generate(*args, **kwargs) -> list[Generation]:
    """`stream` run to the end; one Generation per prompt."""
    return run_to_end(stream(*args, **kwargs))


def run_to_end(it: Iterator) -> list[Generation]:
    """Drain a `stream` iterator and return its results."""
    while True:
        try:
            next(it)
        except StopIteration as done:
            return done.value
