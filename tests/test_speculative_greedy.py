"""Every method's greedy output equals `ar` greedy output token for token, on six architectures (Mistral and Gemma 3
with sliding-window attention that the tests' sequences outrun)."""
import pytest
import torch

from specgen import CachedLM, generate, make_drafter
from tiny import ARCHS, perturbed, random_heads, tiny_model, trimmed

HEAD_KINDS = ["medusa", "hydra", "koala", "redrafter", "hawk", "hawk:hydra"]  # hawk with Hydra++ rows

PROMPTS = [[5, 6, 7, 8, 9, 10, 11, 12], [13, 14, 15], [3, 3, 3, 4, 5, 6, 7, 3, 3, 4, 5, 20, 21]]


def run(target, prompts, method, drafts=None, **kw):
    return generate(CachedLM(target), prompts, make_drafter(method.partition(":")[0], (drafts or {}).get(method)), **kw)


@pytest.fixture(scope="module", params=ARCHS)
def models(request):
    """A target and, per method, what it drafts with: a perturbed copy (pard, draft_model), random heads."""
    target = tiny_model(request.param, layers=3)
    draft = perturbed(target, 0.15 if request.param == "gemma3" else 0.3, pard_token=2)  # gemma3 is more sensitive
    heads = {kind: random_heads(target, kind) for kind in HEAD_KINDS}
    # a draft that predicts three quarters of the target's vocabulary (EAGLE-3-style map to target ids)
    keep = [t for t in range(97) if t % 4]
    small = trimmed(draft, keep)
    trimmed_heads = {f"{k}:trimmed": random_heads(target, k, draft_to_target=keep) for k in ("medusa", "hydra")}
    return target, {"pard": draft, "draft_model": draft, "pard:trimmed": small, "draft_model:trimmed": small,
                    **heads, **trimmed_heads}


def test_ar_matches_transformers_generate(models):
    target, _ = models
    for p in PROMPTS:
        ours = run(target, [p], "ar", max_new_tokens=16)[0].token_ids
        ref = target.generate(torch.tensor([p]), max_new_tokens=16, do_sample=False, pad_token_id=0,
                              eos_token_id=None)[0, len(p):].tolist()
        assert ours == ref


@pytest.mark.parametrize("method", ["pard", "draft_model", "ngram", *HEAD_KINDS, "pard:trimmed",
                                    "draft_model:trimmed", "medusa:trimmed", "hydra:trimmed"])
@pytest.mark.parametrize("max_new_tokens,num_draft_tokens", [(23, 4), (13, 5)])
def test_speculative_greedy_matches_ar(models, method, max_new_tokens, num_draft_tokens):
    target, draft = models
    kw = dict(max_new_tokens=max_new_tokens, num_draft_tokens=num_draft_tokens)
    ref = [run(target, [p], "ar", **kw)[0] for p in PROMPTS]
    single = [run(target, [p], method, draft, **kw)[0] for p in PROMPTS]
    batch = run(target, PROMPTS, method, draft, **kw)
    for r, s, b in zip(ref, single, batch):
        assert s.token_ids == r.token_ids
        assert b.token_ids == r.token_ids
        assert len(r.token_ids) == max_new_tokens
    if method.startswith("draft_model"):  # the perturbed draft agrees often: the test exercises accepted drafts
        # (a trimmed one cannot propose a quarter of the tokens, so less often)
        assert max(s.stats.mean_accepted for s in single) > (1.5 if method == "draft_model" else 1.1)


@pytest.mark.parametrize("method", ["ar", "pard", "draft_model", "ngram", *HEAD_KINDS])
def test_speculative_greedy_stops_at_eos_mid_round(models, method):
    target, draft = models
    free = [run(target, [p], "ar", max_new_tokens=20)[0].token_ids for p in PROMPTS]
    eos = free[0][9]  # a token row 0 emits mid-way; other rows may or may not meet it
    kw = dict(max_new_tokens=20, num_draft_tokens=6, eos_token_ids=[eos])
    ref = [run(target, [p], "ar", **kw)[0] for p in PROMPTS]
    assert ref[0].finish_reason == "eos" and ref[0].token_ids[-1] == eos
    batch = run(target, PROMPTS, method, draft, **kw)
    for r, b in zip(ref, batch):
        assert b.token_ids == r.token_ids
        assert b.finish_reason == r.finish_reason


def test_batch_rows_leave_holes_not_cuts():
    """Rows accept different amounts; the others keep their own speed (no cut to the shortest acceptance)."""
    target = tiny_model("llama", layers=3)
    drafts = {"draft_model": perturbed(target, 0.3)}
    prompts = [PROMPTS[0], PROMPTS[2]]
    alone = [run(target, [p], "draft_model", drafts, max_new_tokens=30)[0] for p in prompts]
    together = run(target, prompts, "draft_model", drafts, max_new_tokens=30)
    for a, t in zip(alone, together):
        assert t.token_ids == a.token_ids
        assert t.stats.mean_accepted == pytest.approx(a.stats.mean_accepted)


def test_tolerance_one_is_exact_and_wider_tolerance_is_reported_lossy(models):
    target, drafts = models
    ref = run(target, PROMPTS, "ar", max_new_tokens=20)
    exact = run(target, PROMPTS, "medusa", drafts, max_new_tokens=20, rule="tolerance", rule_options={"tolerance": 1})
    assert [e.token_ids for e in exact] == [r.token_ids for r in ref]
    wide = run(target, PROMPTS, "medusa", drafts, max_new_tokens=20, rule="tolerance", rule_options={"tolerance": 5})
    assert all(w.stats.lossless is False and w.stats.acceptance == "tolerance" for w in wide)
    assert sum(w.stats.mean_accepted for w in wide) >= sum(e.stats.mean_accepted for e in exact)


@pytest.mark.parametrize("method", ["ar", "draft_model", "medusa"])
def test_allowed_tokens_restrict_every_method_alike(models, method):
    target, drafts = models
    allowed = torch.zeros(97, dtype=torch.bool)
    allowed[40:70] = True
    ref = run(target, PROMPTS, "ar", max_new_tokens=15, allowed=allowed)
    out = run(target, PROMPTS, method, drafts, max_new_tokens=15, allowed=allowed)
    assert [o.token_ids for o in out] == [r.token_ids for r in ref]
    assert all(40 <= t < 70 for o in out for t in o.token_ids)


def test_stats_count_rounds_by_accepted_drafts(models):
    from specgen.loop import accepted_at

    target, draft = models
    s = run(target, [PROMPTS[0]], "draft_model", draft, max_new_tokens=30, num_draft_tokens=4)[0].stats
    assert sum(s.accepted_hist) == s.target_forwards - 1  # every verification round, none for the prefill
    emitted = sum(i * n for i, n in enumerate(s.accepted_hist)) + sum(s.accepted_hist)  # drafts + the target's own
    assert emitted >= s.new_tokens - 1  # (the last round may be cut at the budget)
    at = accepted_at(s.accepted_hist)
    assert all(1 >= a >= b >= 0 for a, b in zip(at, at[1:] + [0]))


@pytest.mark.parametrize("max_run", [None, 3])
@pytest.mark.parametrize("method", ["pard", "draft_model", "ngram", "hydra", "hawk", "pard:trimmed"])
def test_symbol_order_constraint_matches_ar(models, method, max_run):
    """A `SymbolOrder` constraint (the aligned speech stream's: each row says its symbols in order, EOS only after
    the last) bars tokens node by node in the verification tree; the constrained speculative decode equals the
    constrained `ar` decode, and every row's symbols come out in order."""
    from specgen.constraints import SymbolOrder

    target, draft = models
    free = run(target, PROMPTS, "ar", max_new_tokens=24)
    common = sorted({t for g in free for t in g.token_ids}, key=lambda t: -sum(g.token_ids.count(t) for g in free))
    s = common[:4]  # symbols the unconstrained model says often, so that the order bites
    symbols = torch.zeros(target.config.vocab_size, dtype=torch.bool)
    symbols[s] = True
    sequences = [[s[1], s[0], s[2]], [s[0]], [s[2], s[2], s[3], s[1]]]
    eos = common[4]
    if max_run is not None:  # a cap per symbol: 3 tokens after s[0], 2 after the others (and 3 before any)
        max_run = torch.full((target.config.vocab_size,), 2)
        max_run[s[0]] = 3
    kw = dict(max_new_tokens=24, num_draft_tokens=5, eos_token_ids=[eos])
    ref = run(target, PROMPTS, "ar", constraint=SymbolOrder(sequences, symbols, [eos], max_run), **kw)
    assert [g.token_ids for g in ref] != [g.token_ids for g in free]
    said = 0
    for g, seq in zip(ref, sequences):
        spoken = [t for t in g.token_ids if symbols[t]]
        assert spoken == seq[: len(spoken)]
        said += len(spoken)
        if g.finish_reason == "eos":
            assert spoken == seq
        if max_run is not None:  # no longer run of other tokens than the symbol before it allows
            last, n = None, 0
            for t in g.token_ids[:-1]:
                last, n = (t, 0) if symbols[t] else (last, n + 1)
                assert n <= (3 if last in (None, s[0]) else 2)
    assert said >= 1
    for p, seq, r in zip(PROMPTS, sequences, ref):
        one = run(target, [p], method, draft, constraint=SymbolOrder([seq], symbols, [eos], max_run), **kw)[0]
        assert one.token_ids == r.token_ids
    batch = run(target, PROMPTS, method, draft, constraint=SymbolOrder(sequences, symbols, [eos], max_run), **kw)
    assert [g.token_ids for g in batch] == [g.token_ids for g in ref]


@pytest.mark.parametrize("method", ["pard", "ngram", "hydra", "hawk"])
def test_symbol_order_at_fixed_times_matches_ar(models, method):
    """With `at`, each symbol comes exactly after its count of other tokens (the aligned rap stream's word slots),
    and the constrained speculative decode still equals the constrained `ar` decode."""
    from specgen.constraints import SymbolOrder

    target, draft = models
    symbols = torch.zeros(target.config.vocab_size, dtype=torch.bool)
    symbols[[5, 6, 7]] = True
    sequences, at = [[5, 6, 6], [7], [6, 5, 7, 5]], [[2, 2, 7], [0], [1, 4, 4, 9]]
    kw = dict(max_new_tokens=20, num_draft_tokens=5)
    ref = run(target, PROMPTS, "ar", constraint=SymbolOrder(sequences, symbols, (), at=at), **kw)
    for g, seq, times in zip(ref, sequences, at):
        places = [(t, i - k) for k, (i, t) in enumerate((i, t) for i, t in enumerate(g.token_ids) if symbols[t])]
        assert places == list(zip(seq, times))  # each symbol, in order, after exactly its count of others
    batch = run(target, PROMPTS, method, draft, constraint=SymbolOrder(sequences, symbols, (), at=at), **kw)
    assert [g.token_ids for g in batch] == [g.token_ids for g in ref]
    with pytest.raises(ValueError, match="non-decreasing"):
        SymbolOrder([[5, 6]], symbols, at=[[3, 1]])


def test_symbol_order_rejects_non_symbols():
    from specgen.constraints import SymbolOrder

    symbols = torch.zeros(10, dtype=torch.bool)
    symbols[3] = True
    with pytest.raises(ValueError, match="not symbols"):
        SymbolOrder([[3, 4]], symbols)
