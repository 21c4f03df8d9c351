"""Hydra++ draft rounds by specgen's CPU kernel (specgen/kernels/csrc/draft.c, specgen/kernels/rounds.py): the same
guesses and distributions as the PyTorch round, used exactly where it applies, and decodes that stay exact."""
import copy

import pytest
import torch

from specgen import CachedLM, Sampling, config, generate
from specgen.drafters import hydra as hydra_drafters
from specgen.drafters.hydra import HydraDrafter
from specgen.kernels import KernelRound, build
from tiny import random_heads, tiny_model

CHAIN = [[0.9, 0.01]] * 4  # a table whose best trees are chains
SPLIT = [[0.5, 0.4, 0.1]] * 4  # ... and one whose trees branch (three children at the root, parents at depth 1)


@pytest.fixture(scope="module")
def setup():
    assert build.library() is not None, "the kernels should build here (gcc is installed by scripts/setup.sh)"
    target = tiny_model("llama", vocab=97, init=0.5, seed=3)
    return target, random_heads(target, "hydra", scale=2.0, seed=5)


def decode(target, heads, sampling, table=CHAIN, size=3, seed=0, prompts=([5, 6, 7, 8], [9, 10]), allowed=None,
           dtype=torch.float32):
    drafter = HydraDrafter(heads, tree_size=size, table=table, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    outs = generate(CachedLM(target), [list(p) for p in prompts], drafter, sampling, 40, 8, (), None, gen,
                    allowed=allowed)
    return [o.token_ids for o in outs], drafter


def spy_rounds(monkeypatch):
    calls = []
    real = KernelRound.round

    def spy(self, *args):
        out = real(self, *args)
        calls.append((self, args, out))
        return out

    monkeypatch.setattr(KernelRound, "round", spy)
    return calls


@pytest.mark.parametrize("temperature", [0.0, 0.7])
@pytest.mark.parametrize("table,size", [(CHAIN, 3), (SPLIT, 3), (SPLIT, 9)])
def test_a_kernel_round_drafts_what_the_pytorch_round_drafts(setup, monkeypatch, temperature, table, size):
    """Every kernel round of a decode (two rows of different lengths, so padding in the window; some tokens barred),
    over a chain and over branching trees, redone by `hydra_round` from the same state and noise: the same tokens
    and validity, and the same drafted distributions up to float rounding."""
    target, heads = setup
    calls = spy_rounds(monkeypatch)
    allowed = torch.ones(97, dtype=torch.bool)
    allowed[40:60] = False
    _, drafter = decode(target, heads, Sampling(temperature=temperature), table=table, size=size, allowed=allowed)
    assert len(calls) >= 5
    branching = 0
    with torch.inference_mode():
        for _, (plan, newest, memory, valid, root, noise, temp, blocked), (tokens, ok, q) in calls:
            k = next(k for k in range(1, 9) if drafter.plan(k) is plan)
            tree_levels, where, parent = drafter.levels(k)
            branching += any(r > 1 or a is not None for _, a, _, r in tree_levels)
            buffer = torch.zeros(newest.shape[0], memory.shape[1], newest.shape[1])
            buffer[:, -1] = newest  # (the round reads the window's newest state and its keys and values)
            sampling = Sampling(temperature=temp) if noise is not None else None
            e_tokens, e_ok, e_q = hydra_drafters.hydra_round(drafter.heads, tree_levels, where, parent.shape[0],
                                                            drafter.tables, blocked, sampling, buffer, valid, memory,
                                                            root, noise)
            assert torch.equal(ok, e_ok) and torch.equal(tokens[ok], e_tokens[ok])  # (an invalid guess: any token)
            if temperature:
                assert blocked is not None and float(q[..., 40:60].abs().max()) == 0.0
                torch.testing.assert_close(q, e_q, rtol=1e-4, atol=1e-5)
            else:
                assert q is None and e_q is None
    assert bool(branching) == (table is SPLIT)


def test_fp16_weights_give_what_their_fp32_values_give(setup):
    """The kernel reads fp16 weights exactly: fp16 heads draft bit for bit what fp32 heads holding the same
    (rounded) values draft; and the window's keys and values are `PrefixAttention.memory`'s."""
    target, heads = setup
    half = HydraDrafter(heads, dtype=torch.float16).heads
    wide = HydraDrafter(half, dtype=torch.float32).heads  # fp32 copy of the fp16-rounded weights
    with torch.inference_mode():
        tables = half.current_tables()
        a = KernelRound.for_heads(half, tables)
        b = KernelRound.for_heads(wide, {"context": tables["context"].float(), "bias": tables["bias"].float(),
                                        "tokens": [t.float() for t in tables["tokens"]]})
        assert a.weights.half == 1 and b.weights.half == 0
        torch.manual_seed(0)
        states = torch.randn(2, 64, 32)
        mem = a.memory(states)
        assert torch.equal(mem, b.memory(states))
        torch.testing.assert_close(mem, wide.prefix.memory(states), rtol=1e-5, atol=1e-5)
        valid = torch.ones(2, 64, dtype=torch.bool)
        valid[1, :30] = False
        plan = KernelRound.plan(HydraDrafter(half, tree_size=7, table=SPLIT).levels(4)[0])
        noise = torch.empty(2, plan.parents, 97).exponential_()
        root = torch.tensor([3, 4])
        for n in (None, noise):
            out_a = a.round(plan, states[:, -1], mem, valid, root, n, 0.9, None)
            out_b = b.round(plan, states[:, -1], mem, valid, root, n, 0.9, None)
            assert all(x is None and y is None or torch.equal(x, y) for x, y in zip(out_a, out_b))


def test_exact_decodes_with_the_kernel(setup, monkeypatch):
    """Greedy with kernel rounds says what the target says alone; sampled, the kernel's decode is the PyTorch
    round's decode from the same seed (the same draws up to rounding, tested against the same distributions)."""
    target, heads = setup
    calls = spy_rounds(monkeypatch)
    prompts = ([5, 6, 7, 8], [9, 10])
    plain = generate(CachedLM(target), [list(p) for p in prompts], None, Sampling(), 40)
    greedy, _ = decode(target, heads, Sampling(), prompts=prompts)
    assert greedy == [o.token_ids for o in plain] and calls
    sampled, _ = decode(target, heads, Sampling(temperature=1.0), seed=4)
    monkeypatch.setattr(config, "CPU_KERNEL", False)
    calls.clear()
    eager, drafter = decode(target, heads, Sampling(temperature=1.0), seed=4)
    assert drafter.native is None and not calls
    assert sampled == eager


def test_the_kernel_drafts_only_after_a_plain_temperature(setup, monkeypatch):
    """Draws after top-k or top-p are drafted by the PyTorch round, and so is every round when the caller chose
    how (backend "eager" or "compile")."""
    target, heads = setup
    calls = spy_rounds(monkeypatch)
    drafter = HydraDrafter(heads, tree_size=3, table=CHAIN, dtype=torch.float32, backend="eager")
    generate(CachedLM(target), [[5, 6, 7]], drafter, Sampling(temperature=1.0), 20, 8)
    assert drafter.native is None and not calls
    for sampling in (Sampling(temperature=1.0, top_k=5), Sampling(temperature=1.0, top_p=0.9)):
        _, drafter = decode(target, heads, sampling)
        assert drafter.native is None and not calls
    _, drafter = decode(target, heads, Sampling(temperature=1.0, top_k=200))  # top-k beyond the vocabulary: off
    assert drafter.native is not None and calls


def test_inputs_of_the_wrong_shape_are_refused_before_the_c_code_reads_them(setup):
    target, heads = setup
    drafter = HydraDrafter(heads, tree_size=3, table=CHAIN, dtype=torch.float32)
    with torch.inference_mode():
        native = KernelRound.for_heads(drafter.heads, drafter.heads.current_tables())
        plan = KernelRound.plan(drafter.levels(3)[0])
        states = torch.randn(1, 64, 32)
        mem, valid, root = native.memory(states), torch.ones(1, 64, dtype=torch.bool), torch.tensor([3])
        assert native.round(plan, states[:, -1], mem, valid, root, None, 1.0, None)[0].shape == (1, 3)
        for bad in (dict(noise=torch.ones(1, 2, 97)), dict(memory=mem[:, :10]), dict(blocked=torch.ones(5).bool())):
            args = dict(newest=states[:, -1], memory=mem, valid=valid, root=root, noise=None, temperature=1.0,
                        blocked=None) | bad
            with pytest.raises(ValueError, match="unexpected shapes"):
                native.round(plan, **args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_hawk_vertical_distributions_by_the_kernel(dtype, monkeypatch):
    """Hawk's row-up head under drawn drafting (`KernelStack`): the distributions `vertical_logits` and
    `Sampling.probs` give, with barred tokens and a temperature (fp32 weights: to 1e-5; fp16: computed in fp32 from
    the same fp16 values, as the PyTorch product does up to its rounding); a sampled Hawk decode with a vertical
    run is the PyTorch decode's from the same seed; shapes are checked."""
    from specgen.drafters import HawkDrafter
    from specgen.kernels import KernelStack

    target = tiny_model("llama", vocab=97, init=0.5, seed=3)
    hawk = random_heads(target, "hawk:hydra", scale=2.0, seed=6)
    hawk.config["width"] = 4
    hawk.config["rule_accuracy"] = {"drawn": [[0.5, 0.01]] * 4 + [[0.95, 0.0]] * 2}  # a run below a chain of one
    drafter = HawkDrafter(hawk, tree_size=4, dtype=dtype)
    heads = drafter.heads
    with torch.inference_mode():
        native = KernelRound.for_heads(heads.rows, heads.rows.current_tables())
        stack = KernelStack.for_stack(native, heads.vertical[0])
        assert stack is not None and KernelStack.for_stack(native, copy.deepcopy(heads.vertical[0]).double()) is None
        x, blocked = torch.randn(2, 3, 32), torch.zeros(97, dtype=torch.bool)
        blocked[10:30] = True
        got = stack.probs(x, 0.7, blocked)
        h = x  # the row-up head in fp32 from the drafting copy's weight values
        for block in heads.vertical[0].blocks:
            h = h + torch.nn.functional.silu(h @ block.weight.float().T + block.bias.float())
        logits = h @ heads.lm_head.weight.float().T
        want = Sampling(temperature=0.7).probs(logits.masked_fill(blocked, float("-inf")))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert got[..., 10:30].sum() == 0
        with pytest.raises(ValueError, match="unexpected shapes"):
            stack.probs(torch.randn(2, 5), 1.0, None)
    if dtype == torch.float16:
        return
    outs = {}
    for kernel in (True, False):
        monkeypatch.setattr(config, "CPU_KERNEL", kernel)
        d = HawkDrafter(hawk, tree_size=4, dtype=dtype)
        gen = torch.Generator().manual_seed(4)
        outs[kernel] = [o.token_ids for o in generate(CachedLM(target), [[5, 6, 7, 8], [9, 10, 11, 12]], d,
                                                       Sampling(temperature=1.0), 30, 8, (), None, gen)]
        assert d.extension == 3 and (d.stack is not None) == kernel
    assert outs[True] == outs[False]
