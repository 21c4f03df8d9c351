"""Lossless sampling: speculative `sample` draws from exactly the distribution `ar` sampling draws from.

Each test compares observed counts with the exact distribution, computed by enumerating every sequence, in a
chi-square goodness-of-fit test at significance 0.001 with a fixed seed (cells expected < 5 are pooled).
A control shows the test has the power to catch an acceptance rule that is not lossless.
"""
import itertools

import pytest
import torch
from scipy.stats import chisquare

from specgen import CachedLM, DraftConfig, Sampling, generate, make_drafter
from specgen.acceptance import RULES, accept_sample
from specgen.drafters.heads import draw_distinct
from tiny import perturbed, random_heads, tiny_model, trimmed

ALPHA = 1e-3
VOCAB, DEPTH, SAMPLES = 6, 3, 6000
PROMPT = [1, 2, 3, 1, 2]


def exact_distribution(model, sampling: Sampling) -> dict[tuple, float]:
    """P(first DEPTH tokens) under `sampling`, by enumeration: {sequence: probability}."""
    seqs = list(itertools.product(range(VOCAB), repeat=DEPTH))
    ids = torch.tensor([PROMPT + list(s[:-1]) for s in seqs])
    with torch.no_grad():
        logits = model(ids).logits[:, len(PROMPT) - 1:]  # [seqs, DEPTH, vocab]
    probs = sampling.probs(logits)
    picked = probs.gather(2, torch.tensor(seqs)[..., None])[..., 0]
    return dict(zip(seqs, picked.prod(1).tolist()))


def chi_square_p(observed: dict, expected: dict, n: int) -> float:
    obs, exp, pool_o, pool_e = [], [], 0, 0.0
    for s, p in expected.items():
        if p * n < 5:
            pool_o, pool_e = pool_o + observed.get(s, 0), pool_e + p * n
        else:
            obs.append(observed.get(s, 0))
            exp.append(p * n)
    if pool_e > 0:
        obs.append(pool_o)
        exp.append(pool_e)
    scale = sum(obs) / sum(exp)  # rounding in the enumeration must not fail the test
    return chisquare(obs, [e * scale for e in exp]).pvalue


@pytest.fixture(scope="module")
def models():
    """The target and what each method drafts with."""
    target = tiny_model("llama", vocab=VOCAB, init=0.5, seed=3)
    draft = perturbed(target, 0.6, seed=4, pard_token=0)
    drafts = {"draft_model": draft, "pard": draft, "medusa": random_heads(target, "medusa", scale=2.0),
              "hydra": random_heads(target, "hydra", scale=2.0),
              "redrafter": random_heads(target, "redrafter", scale=2.0), "hawk": random_heads(target, "hawk:hydra",
                                                                                           scale=2.0)}
    drafts["hawk"].config["width"] = 2  # rows of two: cached vertical guesses join the trees within DEPTH
    drafts["hawk-run"] = random_heads(target, "hawk:hydra", scale=2.0, seed=6)
    drafts["hawk-run"].config["width"] = 2
    # drawn guesses rated so that a run of vertical ones pays below a chain of one (`HawkDrafter.split_drawn`)
    drafts["hawk-run"].config["rule_accuracy"] = {"drawn": [[0.3, 0.01]] * 4 + [[0.95, 0.0]] * 2}
    # drafts that cannot propose target tokens 1 and 4 (a trimmed vocabulary mapped to target ids)
    drafts["trimmed-pard"] = drafts["trimmed-draft_model"] = trimmed(draft, [0, 2, 3, 5])
    for kind in ("medusa", "hydra"):  # heads that guess among target ids 0, 2, 3 and 5 only
        drafts[f"trimmed-{kind}"] = random_heads(target, kind, scale=2.0, draft_to_target=[0, 2, 3, 5])
    drafts["hydra-chain"] = random_heads(target, "hydra", scale=2.0, seed=5)
    drafts["hydra-chain"].config["topk_accuracy"] = [[0.9, 0.01]] * 4  # with 4 nodes: a chain (`sample_chain`)
    return target, drafts


def sample_counts(target, method, drafts, sampling, seed, rule=None, draws="auto"):
    gen = torch.Generator().manual_seed(seed)
    if method == "hydra-chain":
        drafter = make_drafter("hydra", drafts[method], DraftConfig(tree_size=4, draws=draws))
    elif (kind := method.removeprefix("trimmed-")) in ("medusa", "hydra", "hawk"):
        drafter = make_drafter(kind, drafts.get(method), DraftConfig(draws=draws))
    else:
        drafter = make_drafter(kind, drafts.get(method))
    outs = generate(CachedLM(target), [PROMPT] * SAMPLES, drafter, sampling,
                    max_new_tokens=DEPTH + 2, num_draft_tokens=4, generator=gen, rule=rule)
    counts: dict[tuple, int] = {}
    for o in outs:
        key = tuple(o.token_ids[:DEPTH])
        counts[key] = counts.get(key, 0) + 1
    return counts, outs


SETTINGS = [Sampling(temperature=1.0), Sampling(temperature=0.7, top_k=4, top_p=0.9)]


@pytest.mark.parametrize("sampling", SETTINGS, ids=["t1", "t0.7-k4-p0.9"])
@pytest.mark.parametrize("method", ["ar", "draft_model", "pard", "ngram", "medusa", "medusa:top", "hydra", "hydra:top",
                                    "hydra-chain", "hydra-chain:top", "redrafter", "hawk", "hawk:top",
                                    "trimmed-draft_model", "trimmed-pard", "trimmed-medusa", "trimmed-medusa:top",
                                    "trimmed-hydra", "trimmed-hydra:top"])
def test_speculative_sampling_matches_ar_distribution(models, method, sampling):
    """Medusa, Hydra++ and Hawk draw their guesses from the heads by default (Hawk its horizontal ones); ':top'
    takes their top-k instead (for Hawk, its tree with the cached vertical guesses)."""
    target, drafts = models
    expected = exact_distribution(target, sampling)
    method, _, draws = method.partition(":")
    counts, outs = sample_counts(target, method, drafts, sampling, seed=11, draws=draws or "auto")
    assert chi_square_p(counts, expected, SAMPLES) > ALPHA
    if method.endswith("draft_model"):  # drafts are both accepted and rejected: the rule is exercised
        mean = sum(o.stats.mean_accepted for o in outs) / len(outs)
        assert (1.2 if method == "draft_model" else 1.1) < mean < 3.5  # trimmed: 2 of 6 tokens never drafted


@pytest.mark.parametrize("sampling", SETTINGS, ids=["t1", "t0.7-k4-p0.9"])
def test_hawk_vertical_run_below_drawn_guesses_is_lossless(models, sampling, monkeypatch):
    """Hawk's vertical guesses drawn from their cached distributions below the drawn chain
    (`HawkDrafter.extend_drawn`) keep `ar`'s distribution, and the run's nodes are proposed and taken."""
    from specgen.drafters import HawkDrafter

    target, drafts = models
    taken = []
    accept = HawkDrafter.accept

    def spy(self, emitted, paths, hidden=None):
        taken.extend(len(p) - 1 > self.chain for p in paths)  # more drafts kept than the chain holds: run nodes
        accept(self, emitted, paths, hidden)

    monkeypatch.setattr(HawkDrafter, "accept", spy)
    assert make_drafter("hawk", drafts["hawk-run"]).drawn_split == ([(0,)], 1)
    counts, _ = sample_counts(target, "hawk", {"hawk": drafts["hawk-run"]}, sampling, seed=12)
    assert chi_square_p(counts, exact_distribution(target, sampling), SAMPLES) > ALPHA
    assert sum(taken) > 0.02 * len(taken)


def test_chi_square_catches_a_lossy_rule(models, monkeypatch):
    """Control: accepting every draft without the p/q test changes the distribution, and the test sees it."""
    target, drafts = models

    def accept_all(logits, tokens, parents, valid, q, sampling, generator=None):
        paths, _ = accept_sample(logits, tokens, parents, valid, q, sampling, generator)
        full = [[0] + [i for i in range(1, tokens.shape[1]) if valid[b, i]] for b in range(tokens.shape[0])]
        nxt = [int(torch.multinomial(sampling.probs(logits[b, f[-1]]), 1, generator=generator))
               for b, f in enumerate(full)]
        return full, nxt

    monkeypatch.setitem(RULES, "accept_all", accept_all)
    sampling = Sampling(temperature=1.0)
    counts, _ = sample_counts(target, "draft_model", drafts, sampling, seed=11, rule="accept_all")
    assert chi_square_p(counts, exact_distribution(target, sampling), SAMPLES) < ALPHA


@pytest.mark.parametrize("drawn", ["iid", "deterministic", "without-replacement"],
                         ids=["iid-children", "distinct-deterministic-children", "children-drawn-without-replacement"])
def test_recursive_rejection_over_several_children_is_lossless(drawn):
    """A root with three drafted children: the first emitted token is distributed as the target's p."""
    torch.manual_seed(0)
    n, vocab = 20000, 6
    p_logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, 1.5])
    q = torch.tensor([0.05, 0.4, 0.3, 0.1, 0.1, 0.05])
    gen = torch.Generator().manual_seed(5)
    logits = p_logits.expand(n, 4, vocab).clone()
    if drawn == "iid":
        kids = torch.multinomial(q, 3 * n, replacement=True, generator=gen).view(n, 3)
        qs = q.expand(n, 3, vocab)
    elif drawn == "without-replacement":
        kids, qs, ok = draw_distinct(q.expand(n, vocab), 3, gen)
        assert ok.all() and (kids[:, 0] != kids[:, 1]).all() and (kids[:, 1] != kids[:, 2]).all()
    else:
        kids, qs = torch.tensor([1, 2, 3]).expand(n, 3), None
    tokens = torch.cat([torch.zeros(n, 1, dtype=torch.long), kids], 1)
    parents = torch.tensor([-1, 0, 0, 0]).expand(n, 4)
    valid = torch.ones(n, 4, dtype=torch.bool)
    paths, nxt = accept_sample(logits, tokens, parents, valid, qs, Sampling(temperature=1.0), gen)
    first = [tokens[b, path[1]].item() if len(path) > 1 else nxt[b] for b, path in enumerate(paths)]
    observed = torch.bincount(torch.tensor(first), minlength=vocab).tolist()
    expected = dict(enumerate(p_logits.softmax(0).double().tolist()))
    assert chi_square_p(dict(enumerate(observed)), expected, n) > ALPHA


def test_relaxed_acceptance_with_zero_delta_is_exact_and_reported_lossy(models):
    """delta 0 counts no neighbour: the distribution is the target's; a large delta shifts it, and says so."""
    from specgen.acceptance import relaxed_mass

    target, drafts = models
    sampling = Sampling(temperature=1.0)
    neighbours = torch.tensor([[(v + 1) % VOCAB, (v + 2) % VOCAB] for v in range(VOCAB)])
    expected = exact_distribution(target, sampling)
    gen = torch.Generator().manual_seed(11)
    outs = generate(CachedLM(target), [PROMPT] * SAMPLES, make_drafter("draft_model", drafts["draft_model"]),
                    sampling, max_new_tokens=DEPTH + 2, num_draft_tokens=4, generator=gen, rule="relaxed",
                    rule_options={"neighbours": neighbours, "delta": 0.0})
    counts = {}
    for o in outs:
        counts[tuple(o.token_ids[:DEPTH])] = counts.get(tuple(o.token_ids[:DEPTH]), 0) + 1
    assert chi_square_p(counts, expected, SAMPLES) > ALPHA
    assert outs[0].stats.lossless is False and outs[0].stats.acceptance == "relaxed"
    p = torch.tensor([0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert relaxed_mass(p, torch.tensor(0), neighbours, 0.15).item() == pytest.approx(0.6)  # one neighbour fits
    assert relaxed_mass(p, torch.tensor(0), neighbours, 0.25).item() == pytest.approx(0.7)  # both fit


def test_a_chain_with_an_invalid_draft_in_the_middle_ends_on_p_itself():
    """sample_chain stops at an invalid draft without testing it, so the next token comes from p, not from a
    residual after a rejection that never happened."""
    from specgen.acceptance import sample_chain

    n = 4000
    p = torch.tensor([0.5, 0.5, 0.0])
    tokens = torch.tensor([[0, 2, 1]]).expand(n, 3)  # root, an invalid draft, a valid one behind it
    valid = torch.tensor([[True, False, True]]).expand(n, 3)
    q = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]).expand(n, 2, 3)
    paths, nxt = sample_chain(p.expand(n, 3, 3), tokens, valid, q, torch.Generator().manual_seed(0))
    assert all(path == [0] for path in paths)
    assert 0.45 < sum(t == 0 for t in nxt) / n < 0.55


def test_drawn_children_follow_q_without_replacement():
    """draw_distinct: the first draw is distributed as q, the second as q renormalized without the first, and each
    child's recorded distribution is exactly that; a q with fewer tokens than children marks the rest invalid."""
    n = 20000
    q = torch.tensor([0.5, 0.3, 0.15, 0.05])
    gen = torch.Generator().manual_seed(3)
    kids, qs, ok = draw_distinct(q.expand(n, 4), 2, gen)
    first = torch.bincount(kids[:, 0], minlength=4).tolist()
    assert chi_square_p(dict(enumerate(first)), dict(enumerate(q.double().tolist())), n) > ALPHA
    second = {}
    for a, b in kids.tolist():
        second[a, b] = second.get((a, b), 0) + 1
    expected = {(a, b): (q[a] * q[b] / (1 - q[a])).item() for a in range(4) for b in range(4) if a != b}
    assert chi_square_p(second, expected, n) > ALPHA
    row = kids[0].tolist()
    assert torch.allclose(qs[0, 0], q) and qs[0, 1, row[0]] == 0 and torch.isclose(qs[0, 1].sum(), torch.tensor(1.0))
    _, _, ok = draw_distinct(torch.tensor([[0.7, 0.3, 0.0, 0.0]]), 3, gen)
    assert ok.tolist() == [[True, True, False]]
    # a confident head leaves mass far below 1e-30 after its favourite: what is left is still a distribution
    _, qs, ok = draw_distinct(torch.tensor([[1.0, 9e-37, 2e-43, 0.0]]), 3, gen)
    assert ok.tolist() == [[True, True, True]] and torch.allclose(qs.sum(-1), torch.ones(1, 3))


def test_drawn_takes_is_the_recursive_rejection_rate():
    """The `drawn` calibration: with every token drawn, some child is always taken; the first is taken with
    probability 1 - TV(p, q) on average over draws; and the rates match what `accept_sample` does."""
    from specgen.train.heads import drawn_takes

    torch.manual_seed(0)
    p = torch.tensor([0.4, 0.3, 0.2, 0.1, 0.0, 0.0])
    q = torch.tensor([0.1, 0.2, 0.3, 0.2, 0.1, 0.1])
    n = 20000
    gen = torch.Generator().manual_seed(1)
    took = drawn_takes(p.expand(n, 6), q.expand(n, 6), 6, gen)  # [n, 6]
    assert torch.allclose(took.sum(-1), torch.ones(n), atol=1e-5)
    assert took[:, 0].mean().item() == pytest.approx(torch.minimum(p, q).sum().item(), abs=0.01)
    kids, qs, _ = draw_distinct(q.expand(n, 6), 3, gen)
    tokens = torch.cat([torch.zeros(n, 1, dtype=torch.long), kids], 1)
    logits = p.clamp(min=1e-12).log().expand(n, 4, 6).clone()
    paths, _ = accept_sample(logits, tokens, torch.tensor([-1, 0, 0, 0]).expand(n, 4),
                             torch.ones(n, 4, dtype=torch.bool), qs, Sampling(temperature=1.0), gen)
    taken = torch.bincount(torch.tensor([path[1] - 1 if len(path) > 1 else 3 for path in paths]), minlength=4)
    rates = took[:, :3].mean(0)
    assert torch.allclose(taken[:3] / n, rates, atol=0.015)
