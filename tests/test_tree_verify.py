"""Tree verification plus commit agree with recomputing the accepted path from scratch."""
import random

import pytest
import torch

from specgen import CachedLM
from specgen.tree import DraftTree, ancestry
from tiny import ARCHS, tiny_model


def full_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def random_tree(rng, n):
    parents = [-1] + [rng.randrange(-1, i) for i in range(n - 1)]
    return parents


def path_to(parents, node):
    path = []
    while node >= 0:
        path.append(node)
        node = parents[node]
    return path[::-1]


@pytest.mark.parametrize("arch", ARCHS)
def test_tree_verify_and_commit_match_recomputation(arch):
    rng = random.Random(0)
    model = tiny_model(arch, vocab=50)
    lm = CachedLM(model)
    seqs = [[rng.randrange(50) for _ in range(n)] for n in (7, 3)]  # unequal prompts: left padding
    lm.prefill(seqs)
    for _ in range(4):  # several rounds, so holes from earlier commits are in the cache
        n = 6
        parents = [random_tree(rng, n) for _ in seqs]
        tokens = [[rng.randrange(50) for _ in range(n)] for _ in seqs]
        valid = torch.ones(len(seqs), n, dtype=torch.bool)
        valid[1, -1] = False  # a padding node in row 1; nobody hangs under it
        for b in range(len(seqs)):
            parents[b] = [p if p != n - 1 or b != 1 else -1 for p in parents[b]]
        # the tree is given as a verification tree: node 0 hangs under nothing (it is the root of round)
        logits = lm.step(torch.tensor(tokens), torch.tensor(parents), valid)
        for b, seq in enumerate(seqs):
            for i in range(n):
                if not valid[b, i]:
                    continue
                ids = seq + [tokens[b][j] for j in path_to(parents[b], i)]
                torch.testing.assert_close(logits[b, i], full_logits(model, ids)[-1], atol=1e-4, rtol=1e-4)
        leaves = [rng.randrange(n - 1) for _ in seqs]
        keep = [path_to(parents[b], leaves[b]) for b in range(len(seqs))]
        lm.commit(keep)
        for b in range(len(seqs)):
            seqs[b] = seqs[b] + [tokens[b][j] for j in keep[b]]
    assert lm.pos.tolist() == [len(s) for s in seqs]
    probe = torch.tensor([[1], [2]])
    out = lm.step(probe)
    for b, seq in enumerate(seqs):
        torch.testing.assert_close(out[b, 0], full_logits(model, seq + [probe[b, 0].item()])[-1], atol=1e-4,
                                   rtol=1e-4)


def test_ancestry_of_a_chain_and_a_tree():
    chain = DraftTree.chain(torch.tensor([[4, 5, 6]]))
    anc, depth = ancestry(chain.parents, chain.valid)
    assert depth.tolist() == [[0, 1, 2]]
    assert anc[0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    parents = torch.tensor([[-1, 0, 0, 1, -1]])
    valid = torch.tensor([[True, True, True, True, False]])
    anc, depth = ancestry(parents, valid)
    assert depth.tolist() == [[0, 1, 1, 2, 0]]
    assert anc[0, 3].int().tolist() == [1, 1, 0, 1, 0]
    assert anc[0, 4].int().tolist() == [0, 0, 0, 0, 1]  # an invalid node sees only itself


def test_growing_cache_matches_transformers_dynamic_cache(monkeypatch):
    """The in-place cache (`GrowingLayer`) gives the logits transformers' own DynamicCache gives, bit for bit,
    through tree steps, crops, gathers, a row leaving the batch and growth past its first capacity."""
    import transformers

    import specgen.cached_lm as C

    rng = random.Random(1)
    model = tiny_model("llama", vocab=50, context=96)  # the buffer doubles up to the context, then grows past it
    ours, ref = CachedLM(model), CachedLM(model)
    prompts = [[rng.randrange(50) for _ in range(n)] for n in (9, 4, 6)]
    ours.prefill(prompts)
    monkeypatch.setattr(C, "growing_cache", lambda limit=None: transformers.DynamicCache())
    ref.prefill(prompts)
    assert isinstance(ours.cache.layers[0], C.GrowingLayer) and not isinstance(ref.cache.layers[0], C.GrowingLayer)
    capacity = ours.cache.layers[0]._store[0].shape[-2]
    for r in range(70):  # long enough to outgrow the first buffers and the context
        b, n = ours.batch, 5
        parents = torch.tensor([random_tree(rng, n) for _ in range(b)])
        tokens = torch.randint(0, 50, (b, n), generator=torch.Generator().manual_seed(r))
        assert torch.equal(ours.step(tokens, parents), ref.step(tokens, parents))
        keep = [path_to(parents[i].tolist(), rng.randrange(n)) for i in range(b)]
        if r % 3 == 0:
            keep = [list(range(2))] * b  # every row keeps the same prefix: a crop
        ours.commit(keep)
        ref.commit(keep)
        if r == 10:
            rows = torch.tensor([0, 2])
            ours.select(rows)
            ref.select(rows)
    assert ours.cache.layers[0]._store[0].shape[-2] > capacity
    assert ours.slot_valid.shape[1] > 96  # (llama positions need no table: the test runs past its context)
    probe = torch.tensor([[1], [2]])
    assert torch.equal(ours.step(probe), ref.step(probe))


def test_a_dropped_cached_lm_leaves_no_hidden_state_hook_behind():
    """The listener lives on the model, which outlives its wrappers: it must hold its CachedLM weakly (or every
    wrapper of one model would keep its KV cache alive), and a dropped wrapper's listener is removed when the
    next wrapper starts listening."""
    import gc
    import weakref

    model = tiny_model("llama", vocab=50)
    hooks = model.get_output_embeddings()._forward_hooks
    lm = CachedLM(model)
    lm.keep_hidden()
    lm.prefill([[3, 4, 5]])
    assert len(hooks) == 1 and lm.hidden.shape[:2] == (1, 3)
    gone = weakref.ref(lm)
    del lm
    gc.collect()
    assert gone() is None  # nothing kept it alive
    second = CachedLM(model)
    second.keep_hidden()
    second.prefill([[6, 7]])
    assert len(hooks) == 1 and second.hidden.shape[:2] == (1, 2)
