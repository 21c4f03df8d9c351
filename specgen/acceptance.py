"""Acceptance rules: how much of a verified draft tree survives against the target distribution.

Each rule walks every row's tree from the root (index 0, the last emitted token) and returns the accepted path
(node indices, root first) and the next token, drawn from the target at the path's end (a correction when a
draft was rejected, a bonus when the path reached a leaf). `greedy` and `sample` are lossless; `typical` is
lossy and says so (`LOSSLESS`), and the loop reports it in its stats.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .sampling import Sampling


def children_of(parents: list[int], valid: list[bool]) -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in parents]
    for i, (p, ok) in enumerate(zip(parents, valid)):
        if ok and p >= 0:
            kids[p].append(i)
    return kids


def is_chain(parents: torch.Tensor) -> bool:
    """Whether a verification tree (root at 0) is a chain: node i hangs under node i-1."""
    n = parents.shape[1]
    return bool((parents[:, 1:] == torch.arange(n - 1, device=parents.device)).all())


def accepted_run(ok: torch.Tensor) -> torch.Tensor:
    """Length of the leading run of True per row: ok [batch, n] -> [batch]."""
    return ok.long().cumprod(1).sum(1)


def chain_paths(accepted: list[int]) -> list[list[int]]:
    """The accepted node paths of chains, from each row's count of accepted drafts."""
    return [list(range(a + 1)) for a in accepted]


def accept_greedy(logits, tokens, parents, valid, q=None, sampling=None, generator=None):
    """Exact-match acceptance: follow the child that equals the target's argmax (speculative == greedy AR)."""
    if is_chain(parents):  # one pass on the device: the leading run of drafts equal to the argmax before them
        best = logits.argmax(-1)  # [batch, nodes]
        accepted = accepted_run((tokens[:, 1:] == best[:, :-1]) & valid[:, 1:])
        return chain_paths(accepted.tolist()), best.gather(1, accepted[:, None])[:, 0].tolist()
    best = logits.argmax(-1).tolist()  # [batch][nodes]
    toks, pars, vals = tokens.tolist(), parents.tolist(), valid.tolist()
    paths, nxt = [], []
    for b in range(len(best)):
        kids = children_of(pars[b], vals[b])
        node, path = 0, [0]
        while True:
            hit = [c for c in kids[node] if toks[b][c] == best[b][node]]
            if not hit:
                break
            node = hit[0]
            path.append(node)
        paths.append(path)
        nxt.append(best[b][node])
    return paths, nxt


def accept_sample(logits, tokens, parents, valid, q, sampling: Sampling, generator=None, mass=None):
    """Lossless speculative sampling (Leviathan et al. 2023; Chen et al. 2023), with SpecInfer's recursive
    rejection when a node has several drafted children (Miao et al. 2024).

    p: target distribution at a node, q: the draft distribution a child was drawn from (one-hot when the drafter
    is deterministic). Accept child x with min(1, p(x)/q(x)); on rejection p <- norm(max(p - q, 0)) and try the next
    child; when none is left, draw the next token from p. Children of one node must be drawn independently.
    `mass(p, x)` replaces p(x) in the test (relaxed acceptance); without it the rule is exact.
    """
    p_all = sampling.probs(logits)  # [batch, nodes, vocab]
    if is_chain(parents):
        return sample_chain(p_all, tokens, valid, q, generator, mass)
    # every node's test as a first child, in one batch of tensor ops: u q(x) < p(x), p at the node's parent (the
    # walk takes these verdicts as they are; a later sibling is tested against the residual, which depends on
    # the siblings before it, so those few tests run where the walk reaches them, with the node's same u)
    b, n = tokens.shape
    x = tokens[:, 1:]
    up = parents[:, 1:].clamp(min=0)
    if mass is None:  # p(x) at each node's parent, read in place
        px = p_all[torch.arange(b, device=p_all.device)[:, None], up, x]  # [batch, n - 1]
    else:
        px = mass(p_all.gather(1, up[..., None].expand(-1, -1, p_all.shape[-1])), x)
    qx = q.gather(2, x[..., None])[..., 0] if q is not None else torch.ones_like(px)
    u = torch.rand(b, n - 1, generator=generator, device=p_all.device)
    first = (u * qx < px).tolist()
    toks, pars, vals = tokens.tolist(), parents.tolist(), valid.tolist()
    paths, ends = [], []
    for row in range(b):
        kids = children_of(pars[row], vals[row])
        node, path = 0, [0]
        while True:
            p = None  # the distribution at `node` the next child is tested against; None: p_all itself, untouched
            for c in kids[node]:
                if p is None:
                    kept = first[row][c - 1]
                else:
                    px_c = p[toks[row][c]] if mass is None else mass(p, x[row, c - 1])
                    kept = bool(u[row, c - 1] * qx[row, c - 1] < px_c)
                if kept:
                    break
                qc = q[row, c - 1] if q is not None else None
                p = residual(p_all[row, node] if p is None else p, qc, toks[row][c])
            else:  # no child kept: the next token comes from what is left at this node
                ends.append(p_all[row, node] if p is None else p)
                break
            node = c
            path.append(c)
        paths.append(path)
    nxt = torch.multinomial(torch.stack(ends), 1, generator=generator)[:, 0]
    return paths, nxt.tolist()


def sample_chain(p_all, tokens, valid, q, generator, mass=None):
    """`accept_sample` for chains, every depth at once: draft i is kept while u_i q_i(x_i) < p_i(x_i) holds for
    it and every draft before it; the next token comes from the residual at the first rejection, or from p at the
    end of the chain (or at an invalid draft, which was never tested). The tests run as one batch of tensor ops;
    the walk along each row's few verdicts is plain Python."""
    b, n = tokens.shape[0], tokens.shape[1] - 1
    x = tokens[:, 1:]  # [batch, n] drafts; p_all[:, i] is the target at draft i+1's parent
    px = p_all[:, :-1].gather(2, x[..., None])[..., 0] if mass is None else mass(p_all[:, :-1], x)
    qx = q.gather(2, x[..., None])[..., 0] if q is not None else torch.ones_like(px)
    u = torch.rand(b, n, generator=generator, device=p_all.device)
    verdicts, real = (u * qx < px).tolist(), valid[:, 1:].tolist()
    accepted, ends = [], []
    for row in range(b):
        a = next((i for i in range(n) if not (verdicts[row][i] and real[row][i])), n)
        p_end = p_all[row, a]
        if a < n and real[row][a]:  # a draft tested and rejected: draw from what its q left of p
            q_end = q[row, a] if q is not None else F.one_hot(x[row, a], p_all.shape[-1]).to(p_all)
            p_end = leftover(p_end, q_end)
        accepted.append(a)
        ends.append(p_end)
    nxt = torch.multinomial(torch.stack(ends), 1, generator=generator)[:, 0]
    return chain_paths(accepted), nxt.tolist()


def residual(p: torch.Tensor, q: torch.Tensor | None, x: int) -> torch.Tensor:
    """norm(max(p - q, 0)); q None stands for the one-hot distribution on x."""
    if q is None:
        q = torch.zeros_like(p)
        q[x] = 1.0
    return leftover(p, q)


def leftover(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(p - q, 0)) over the last axis, what recursive rejection samples from after rejecting a draft from q.
    A rejection leaves mass >= q(x) - p(x) > 0; only rounding can empty it, and then p itself is the answer.
    No floor on the total: what is left may be far below any fixed one."""
    r = (p - q).clamp(min=0.0)
    total = r.sum(-1, keepdim=True)
    return torch.where(total > 0, r / torch.where(total > 0, total, 1.0), p)


def accept_typical(logits, tokens, parents, valid, q, sampling: Sampling, generator=None, epsilon: float = 0.09,
                   delta: float = 0.3):
    """Typical acceptance (Cai et al. 2024, "Medusa", Sec. 2.3.1). LOSSY: the output no longer follows the
    target's distribution exactly; it trades that for longer accepted runs.

    A child x passes when p(x) > min(epsilon, delta * exp(-H(p))), p the target distribution at its parent after
    temperature, top-k and top-p; the walk follows the passing child with the largest p(x), and the next token is
    drawn from p where the walk stops.
    """
    p_all = sampling.probs(logits)  # [batch, nodes, vocab]
    entropy = -(p_all * p_all.clamp(min=1e-20).log()).sum(-1)  # [batch, nodes]
    threshold = torch.minimum(torch.full_like(entropy, epsilon), delta * torch.exp(-entropy)).tolist()
    toks, pars, vals = tokens.tolist(), parents.tolist(), valid.tolist()
    paths, nxt = [], []
    for b in range(p_all.shape[0]):
        kids = children_of(pars[b], vals[b])
        node, path = 0, [0]
        while True:
            p = p_all[b, node]
            ok = [(p[toks[b][c]].item(), c) for c in kids[node]]
            ok = [(pc, c) for pc, c in ok if pc > threshold[b][node]]
            if not ok:
                break
            node = max(ok)[1]
            path.append(node)
        paths.append(path)
        nxt.append(int(torch.multinomial(p_all[b, node], 1, generator=generator)))
    return paths, nxt


def accept_tolerance(logits, tokens, parents, valid, q, sampling: Sampling, generator=None, tolerance: int = 3):
    """Tolerance acceptance (VADUSA, Li et al. 2024, "Fast and High-Quality Auto-Regressive Speech Synthesis via
    Speculative Decoding", Sec. 3.2). LOSSY for tolerance > 1: a draft token is accepted when it is among the
    target's `tolerance` most probable tokens at its position; tolerance 1 is exact greedy matching.

    The walk follows the accepted child the target ranks highest; the next token is the argmax at temperature 0,
    else a draw from the target's distribution.
    """
    toks, pars, vals = tokens.tolist(), parents.tolist(), valid.tolist()
    paths, ends = [], []
    for b in range(logits.shape[0]):
        kids = children_of(pars[b], vals[b])
        node, path = 0, [0]
        while True:
            row = logits[b, node]  # rank = how many tokens the target scores strictly higher
            ranked = [(int((row > row[toks[b][c]]).sum()), c) for c in kids[node]]
            ok = [(r, c) for r, c in ranked if r < tolerance]
            if not ok:
                break
            node = min(ok)[1]
            path.append(node)
        paths.append(path)
        ends.append(node)
    last = logits[torch.arange(logits.shape[0], device=logits.device), torch.tensor(ends, device=logits.device)]
    return paths, sampling.pick(last, generator).tolist()


def relaxed_mass(p: torch.Tensor, x: torch.Tensor, neighbours: torch.Tensor, delta: float) -> torch.Tensor:
    """p(x) plus the mass of x's nearest neighbours, nearest first, as long as the added mass stays within delta.
    p [..., vocab], x [...], neighbours [vocab, k] (ids by closeness, -1 = none) -> [...]."""
    near = neighbours.to(p.device)[x]  # [..., k]
    got = p.gather(-1, near.clamp(min=0)) * (near >= 0)
    keep = got.cumsum(-1) <= delta
    return p.gather(-1, x[..., None])[..., 0] + (got * keep).sum(-1)


def accept_relaxed(logits, tokens, parents, valid, q, sampling: Sampling, generator=None, neighbours=None,
                   delta: float = 0.2):
    """LANTERN-style relaxed acceptance (Jang et al. 2024, "LANTERN: Accelerating Visual Autoregressive Models
    with Relaxed Speculative Decoding"). LOSSY: a draft x is tested with p(x) plus the probability of its nearest
    codebook neighbours (each neighbour's mass counted while the total added stays within delta, which bounds
    the total-variation shift per position), instead of p(x) alone. `neighbours` [vocab, k]: ids by latent
    distance, -1 for none (text and special ids have none, so they are tested exactly)."""
    if neighbours is None:
        raise ValueError("relaxed acceptance needs each token's codebook neighbours: "
                         "rule_options={'neighbours': ids [vocab, k]}")
    return accept_sample(logits, tokens, parents, valid, q, sampling, generator,
                         mass=lambda p, x: relaxed_mass(p, x, neighbours, delta))


RULES = {"greedy": accept_greedy, "sample": accept_sample, "typical": accept_typical, "tolerance": accept_tolerance,
         "relaxed": accept_relaxed}
LOSSLESS = {"greedy": True, "sample": True, "typical": False, "tolerance": False, "relaxed": False}


def get_rule(name: str):
    if name not in RULES:
        raise ValueError(f"unknown acceptance rule {name!r}: choose one of {sorted(RULES)}")
    return RULES[name]


def tolerance_options(acceptance: str | None, tolerance: int | None) -> dict | None:
    """Options for the acceptance rule: `tolerance` (k >= 1) goes with acceptance="tolerance" only."""
    if tolerance is None:
        return None
    if acceptance != "tolerance":
        raise ValueError("tolerance only applies with acceptance='tolerance'")
    if not isinstance(tolerance, int) or tolerance < 1:
        raise ValueError(f"tolerance must be an integer >= 1 (1 is exact greedy matching), got {tolerance!r}")
    return {"tolerance": tolerance}
