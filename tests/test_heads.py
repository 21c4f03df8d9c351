"""Draft heads: the candidate tree, training by self-distillation, and loading beside a target."""
import numpy as np
import pytest
import torch

from specgen_apps.cli import main
from modalities.text import TextPipeline
from specgen.train.heads import capture_hidden
from specgen.train.losses import distill_loss
from specgen import DraftConfig
from specgen.tree import sparse_tree, tree_tensors
from tiny import random_heads, tiny_model, tiny_tokenizer


def test_sparse_tree_keeps_prefixes_in_breadth_first_order():
    acc = [[0.6, 0.2, 0.1], [0.4, 0.2, 0.1], [0.3, 0.1, 0.05]]
    paths = sparse_tree(acc, 10)
    assert len(paths) == 10 and len(set(paths)) == 10
    assert paths[0] == (0,) and (0, 0) in paths and (0, 0, 0) in paths
    index = {p: i for i, p in enumerate(paths)}
    for p in paths:
        if len(p) > 1:
            assert index[p[:-1]] < index[p]  # parents first
    depth, rank, parent = tree_tensors(paths)
    assert depth[index[(0, 1)]] == 1 and rank[index[(0, 1)]] == 1 and parent[index[(0, 1)]] == index[(0,)]


@pytest.mark.parametrize("kind", ["medusa", "hydra", "koala", "redrafter", "hawk", "hawk:hydra"])
def test_one_training_step_lowers_the_distillation_loss(kind):
    target = tiny_model("llama", layers=2)
    heads = random_heads(target, kind)
    x = torch.randint(3, 97, (4, 24))
    with torch.no_grad():
        hidden, logits = capture_hidden(target, x)
    opt = torch.optim.AdamW(heads.parameters(), lr=1e-2)
    before, _ = distill_loss(heads.train_logits(hidden, x), logits)
    before.backward()
    opt.step()
    after, _ = distill_loss(heads.train_logits(hidden, x), logits)
    assert after.item() < before.item()


def test_tv_loss_is_the_chance_a_drawn_guess_is_rejected_and_training_lowers_it():
    target = tiny_model("llama", layers=2)
    heads = random_heads(target, "hydra")
    x = torch.randint(3, 97, (4, 24))
    with torch.no_grad():
        hidden, logits = capture_hidden(target, x)
    head_logits = heads.train_logits(hidden, x)
    _, per_head = distill_loss(head_logits, logits, kind="tv")
    for j, (head, want) in enumerate(zip(head_logits.unbind(2), [logits[:, j + 1:] for j in range(4)])):
        kept = torch.minimum(head[:, : want.shape[1]].softmax(-1), want.softmax(-1)).sum(-1).mean()
        assert per_head[j] == pytest.approx(1 - kept.item(), abs=1e-5)
    opt = torch.optim.AdamW(heads.parameters(), lr=1e-2)
    for kind in ("tv", "kl+tv"):
        before, _ = distill_loss(heads.train_logits(hidden, x), logits, kind=kind)
        before.backward()
        opt.step()
        opt.zero_grad()
        after, _ = distill_loss(heads.train_logits(hidden, x), logits, kind=kind)
        assert after.item() < before.item()
    with pytest.raises(ValueError, match="kl, tv, kl\\+tv"):
        distill_loss(head_logits, logits, kind="js")


def saved_target(tmp_path):
    """A tiny target with its tokenizer saved at tmp_path/target and random training tokens at tmp_path/train.bin."""
    tok = tiny_tokenizer(vocab=300)
    target = tiny_model("llama", vocab=len(tok), context=128, layers=2)
    target.save_pretrained(tmp_path / "target")
    tok.save_pretrained(tmp_path / "target")
    np.random.default_rng(0).integers(4, len(tok), 3000).astype(np.uint16).tofile(tmp_path / "train.bin")
    return target


@pytest.mark.parametrize("kind", ["medusa", "hydra", "koala", "redrafter", "hawk"])
def test_train_heads_then_decode_with_them(tmp_path, kind):
    saved_target(tmp_path)
    out = tmp_path / kind
    assert main(["train-heads", "--target", str(tmp_path / "target"), "--kind", kind, "--data",
                 f"{tmp_path}/train.bin:1", "--out", str(out), "--sequences", "12", "--heldout-sequences", "4",
                 "--prompt-len", "8", "--new-tokens", "16", "--gen-batch", "6", "--steps", "3", "--batch", "2",
                 "--mixed-precision", "no", "--cpu"]) == 0
    pipe = TextPipeline.from_pretrained(str(tmp_path / "target"), draft=str(out))
    assert pipe.method == kind
    assert len(pipe.draft.config["topk_accuracy"]) == len(pipe.draft.offsets)
    spec = pipe.generate("def f", max_new_tokens=20)
    assert spec.token_ids == pipe.generate("def f", max_new_tokens=20, method="ar").token_ids
    lossy = pipe.generate("def f", max_new_tokens=20, temperature=1.0, acceptance="typical", seed=0)
    assert lossy.stats.acceptance == "typical" and lossy.stats.lossless is False
    with pytest.raises(ValueError, match="needs a draft model"):
        pipe.generate("def f", method="pard")


def test_koala_discriminator_learns_and_the_heads_feel_it():
    """One adversarial round: the discriminator's loss falls, and the heads get a gradient from fooling it."""
    from specgen.train.losses import Discriminator, discriminator_loss, fooling_loss

    torch.manual_seed(0)
    target = tiny_model("llama", layers=2)
    heads = random_heads(target, "koala")
    x = torch.randint(3, 97, (4, 16))
    with torch.no_grad():
        hidden, logits = capture_hidden(target, x)
    disc = Discriminator(32, 97)
    opt = torch.optim.AdamW(disc.parameters(), lr=1e-2)
    d_before = discriminator_loss(disc, hidden, heads.train_logits(hidden, x), logits)
    d_before.backward()
    opt.step()
    assert discriminator_loss(disc, hidden, heads.train_logits(hidden, x), logits).item() < d_before.item()
    fooling_loss(disc, hidden, heads.train_logits(hidden, x), logits).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.parameters())


def test_hawk_cache_holds_only_undecided_positions_and_feeds_the_tree():
    from specgen import CachedLM, Sampling, generate
    from specgen.drafters import HawkDrafter

    target = tiny_model("llama", layers=2)
    heads = random_heads(target, "hawk")
    heads.config["width"] = 4
    drafter = HawkDrafter(heads)
    seen = []
    original = drafter.accept

    def accept(emitted, paths, hidden=None):
        original(emitted, paths, hidden)
        seen.append((drafter.root_pos[0], sorted(drafter.cache[0])))

    drafter.accept = accept
    generate(CachedLM(target), [[5, 6, 7, 8]], drafter, max_new_tokens=30)
    assert seen and any(keys for _, keys in seen)
    for root, keys in seen:
        assert all(k > root for k in keys)  # never a guess for a position already decided
    # a cached run right after the root joins the tree as a chain
    lm = CachedLM(target)
    lm.keep_hidden()
    lm.prefill([[5, 6, 7, 8]])
    prompt_hidden = lm.hidden  # (the heads' own LM-head calls overwrite lm.hidden: they share that module)
    drafter.start([[5, 6, 7, 8]], [9], Sampling(), 97, torch.device("cpu"), None, prompt_hidden)
    drafter.cache[0] = {drafter.root_pos[0] + j: {0: t} for j, t in [(1, 11), (2, 12), (3, 13)]}
    tree = drafter.propose(4)
    toks, pars = tree.tokens[0].tolist(), tree.parents[0].tolist()
    i11 = next(i for i, t in enumerate(toks) if t == 11 and pars[i] == -1)
    i12 = next(i for i, t in enumerate(toks) if t == 12 and pars[i] == i11)
    assert any(t == 13 and pars[i] == i12 for i, t in enumerate(toks))
    # vertical candidates share the node budget: with 3 nodes, a likely cached run displaces horizontal nodes
    small = HawkDrafter(heads, tree_size=3)
    small.start([[5, 6, 7, 8]], [9], Sampling(), 97, torch.device("cpu"), None, prompt_hidden)
    small.agree = small.differ = small.marginal = [0.99, 0.99]  # cached guesses rated near-certain
    small.cache[0] = {small.root_pos[0] + j: {0: t} for j, t in [(1, 11), (2, 12), (3, 13)]}
    tree = small.propose(4)
    assert int(tree.valid.sum()) == 3 and tree.tokens[0].tolist() == [11, 12, 13]
    small.agree = small.differ = small.marginal = [0.0, 0.0]  # never taken: the horizontal tree alone
    alone = small.propose(4)
    small.vertical = False
    assert tree_paths(alone) == tree_paths(small.propose(4))  # the same tree (its nodes may come in another order)


@pytest.mark.parametrize("rows", ["hydra", "medusa"])
def test_hawk_drawn_run_extends_the_chain_from_cached_distributions(rows):
    """With drawn guesses the vertical heads extend the chain of first guesses past its last head: how many
    nodes go to that run is fixed by the calibrated rates; each run node is drawn from the distribution cached for
    its position and is real only while every position before it in the run has one."""
    from specgen import CachedLM, Sampling
    from specgen.drafters import HawkDrafter

    target = tiny_model("llama", layers=2)
    heads = random_heads(target, "hawk:hydra" if rows == "hydra" else "hawk")
    heads.config["width"] = 4
    # drawn horizontal guesses kept half the time, a drawn row-up guess 95%: a run pays below a chain of one
    heads.config["rule_accuracy"] = {"drawn": [[0.5, 0.01]] * heads.num_heads + [[0.95, 0.0]] * 2}
    drafter = HawkDrafter(heads, tree_size=4)
    assert drafter.drawn_split == ([(0,)], 3)  # the run stops one row ahead of the root (width 4)
    heads.config["rule_accuracy"]["drawn"][heads.num_heads] = [0.1, 0.0]  # a poor vertical head: no run
    assert HawkDrafter(heads, tree_size=4).drawn_split == (HawkDrafter(heads, tree_size=4).drawn_alone, 0)
    heads.config["rule_accuracy"]["drawn"][heads.num_heads] = [0.95, 0.0]

    lm = CachedLM(target)
    lm.keep_hidden()
    lm.prefill([[5, 6, 7, 8], [5, 6, 7, 8]])
    hidden = lm.hidden
    drafter.configure("sample")
    drafter.start([[5, 6, 7, 8]] * 2, [9, 9], Sampling(temperature=1.0), 97, torch.device("cpu"),
                  torch.Generator().manual_seed(0), hidden)
    assert drafter.extension == 3 and drafter.chain == 1 and drafter.uses_cache
    root = drafter.root_pos[0]
    spike = torch.zeros(97)
    spike[42] = 1.0  # a cached distribution with all its mass on one token
    drafter.ring_pos.fill_(-1)  # (what the prompt's state left)
    for row, pos in [(0, root + 2), (0, root + 3), (1, root + 3)]:  # root + 1 is the chain's position
        drafter.ring[row, pos % 4], drafter.ring_pos[row, pos % 4] = spike, pos
    drafter.ring_pos[1, (root + 4) % 4] = root  # a stale slot (a decided position) is no distribution
    tree = drafter.propose(8)
    assert tree.tokens.shape == (2, 4) and tree.parents[0].tolist() == [-1, 0, 1, 2]
    assert tree.valid[0].tolist() == [True, True, True, False] and tree.tokens[0, 1:3].tolist() == [42, 42]
    assert torch.equal(tree.q[0, 1], spike) and tree.valid[1].tolist() == [True, False, False, False]  # a gap first
    assert drafter.propose(2).valid[0].tolist() == [True, True, False, False]  # the depth budget k holds
    assert drafter.propose(3).valid[0].tolist() == [True, True, True, False]  # ... whatever k came before
    # a path one state longer than the ring (root + 4 drafts, width 4): its first state's guess is for a position
    # this round decides, and each slot ends up with the distribution of the position it records
    states = torch.randn(2, 9, hidden.shape[-1])
    drafter.accept([[1, 2, 3, 4, 5], [1]], [[0, 1, 2, 3, 4], [0]], states)
    with torch.inference_mode():
        logits = drafter.heads.vertical_logits(states[0, :5].to(drafter.heads.lm_head.weight.dtype), 1)[:, 0]
        want = Sampling(temperature=1.0).probs(logits)
    written = {int(p): drafter.ring[0, int(p) % 4] for p in drafter.ring_pos[0]}
    assert sorted(written) == [root + 2 + j + 4 for j in range(4)]  # from the states at root + 1 ... root + 4
    for j in range(4):
        torch.testing.assert_close(written[root + 2 + j + 4], want[j + 1], rtol=1e-4, atol=1e-6)
    heads.config["vertical"] = 0  # heads without vertical ones: the horizontal tree alone, never a run
    assert HawkDrafter(heads, tree_size=4).drawn_split[1] == 0
    heads.config["vertical"] = 2
    vertical_off = HawkDrafter(heads, tree_size=4)
    vertical_off.vertical = False  # the ablation: the horizontal tree of all four nodes, no cache
    vertical_off.configure("sample")
    vertical_off.start([[5, 6, 7, 8]], [9], Sampling(temperature=1.0), 97, torch.device("cpu"), None, hidden[:1])
    assert not vertical_off.uses_cache and vertical_off.propose(8).tokens.shape[1] == 4


def tree_paths(tree) -> set[tuple[int, ...]]:
    """Row 0's candidate paths as token tuples, whatever order the nodes come in."""
    toks, pars = tree.tokens[0].tolist(), tree.parents[0].tolist()
    path = {}
    for i, (t, p) in enumerate(zip(toks, pars)):
        path[i] = (path[p] if p >= 0 else ()) + (t,)
    return set(path.values())


def test_tree_size_defaults_by_device_and_is_checked():
    from specgen.drafters import make_drafter
    from specgen.drafters.heads import CPU_TREE_SIZE

    heads = random_heads(tiny_model())
    assert len(make_drafter("medusa", heads).paths) == CPU_TREE_SIZE  # these tests run on the CPU
    assert len(make_drafter("medusa", heads, DraftConfig(tree_size=5)).paths) == 5
    heads.config["cpu_tree_size"] = 3  # measured for these heads and stored with them
    assert len(make_drafter("medusa", heads).paths) == 3
    with pytest.raises(ValueError, match="tree_size"):
        make_drafter("medusa", heads, DraftConfig(tree_size=0))


def test_trees_put_the_run_of_first_guesses_first():
    """Depth-first node order, lower ranks first: accepting the first guesses keeps a prefix of the nodes (a cache
    crop); parents still precede their children."""
    from specgen.drafters import make_drafter

    heads = random_heads(tiny_model())
    heads.config["topk_accuracy"] = [[0.6, 0.3], [0.5, 0.3], [0.4, 0.3]]
    paths = make_drafter("medusa", heads, DraftConfig(tree_size=7)).paths
    assert paths[:3] == [(0,), (0, 0), (0, 0, 0)] and len(paths) == 7
    assert all(paths.index(p[:-1]) < i for i, p in enumerate(paths) if len(p) > 1)


def test_heads_draft_in_half_precision_on_a_cpu_from_a_kept_copy():
    """fp32 heads draft from an fp16 copy with its own LM head and embeddings (the target keeps fp32); the copy is
    made once and remade when a weight changes; dtype=float32 drafts with the heads themselves."""
    from specgen import CachedLM
    from specgen.drafters import make_drafter

    target = tiny_model()
    heads = random_heads(target, "hydra")
    drafter = make_drafter("hydra", heads)
    assert drafter.heads is not heads and drafter.dtype == torch.float16
    assert drafter.heads.lm_head.weight.dtype == torch.float16 and target.lm_head.weight.dtype == torch.float32
    assert all(p.dtype == torch.float16 for p in drafter.heads.parameters())
    assert next(heads.parameters()).dtype == torch.float32  # the heads themselves are untouched
    assert make_drafter("hydra", heads).heads is drafter.heads  # kept
    with torch.no_grad():
        heads.inputs[0].bias.add_(1.0)
    remade = make_drafter("hydra", heads).heads
    assert remade is not drafter.heads
    torch.testing.assert_close(remade.inputs[0].bias, heads.inputs[0].bias.half())
    assert make_drafter("hydra", heads, DraftConfig(dtype=torch.float32)).heads is heads
    heads.config["cpu_tree_size"] = 3  # a setting changed after the copy was made reaches the copy
    assert len(make_drafter("hydra", heads).paths) == 3
    lm = CachedLM(target)
    lm.keep_hidden()  # the target's LM head gets the hidden-state listener, a copy should not
    hawk = random_heads(target, "hawk:hydra")
    for dtype in (torch.float32, torch.float16):  # Hawk's horizontal drafter drafts in the precision asked for
        drafter = make_drafter("hawk", hawk, DraftConfig(dtype=dtype))
        assert drafter.horizontal.dtype == dtype and drafter.heads.lm_head.weight.dtype == dtype
    assert target.lm_head._forward_hooks and not drafter.heads.lm_head._forward_hooks


def test_rule_tables_measure_what_each_acceptance_walk_takes():
    """greedy: the guess is the argmax; sample: the target's probability of the guess (what recursive rejection
    accepts); tolerance:K: the guess the walk takes among those in the top K, so K = vocab takes exactly one."""
    from specgen.train.heads import rule_accuracy

    target = tiny_model("llama", layers=2, vocab=31)
    heads = random_heads(target, "medusa", num_heads=2)
    x = torch.randint(3, 31, (3, 20))
    tables = rule_accuracy(heads, target, x, ["greedy", "tolerance:1", "tolerance:31", "sample"], ranks=4)
    assert tables["tolerance:1"] == tables["greedy"]
    for row in tables["tolerance:31"]:
        assert sum(row) == pytest.approx(1.0)  # every guess is in the top 31: the walk takes one per position
    with torch.no_grad():
        hidden, logits = capture_hidden(target, x)
        guess = heads.train_logits(hidden, x).topk(4, -1).indices  # [b, L, heads, ranks]
    p = logits.softmax(-1)[:, 2:].gather(-1, guess[:, :-2, 1])  # head 1 at t guesses t + 3 = logits at t + 2
    assert tables["sample"][1] == pytest.approx(p.mean((0, 1)).tolist(), abs=1e-5)
    later = rule_accuracy(heads, target, x, ["sample"], ranks=4, start=torch.tensor([15, 15, 15]))
    assert later["sample"][1] == pytest.approx(p[:, 15 - 3:].mean((0, 1)).tolist(), abs=1e-5)
    with pytest.raises(ValueError, match="tolerance:K"):
        rule_accuracy(heads, target, x, ["tolerance:x"])


def test_calibrate_heads_shapes_the_tree_per_rule_and_keeps_decoding_exact(tmp_path):
    from specgen import make_drafter, tree_rule
    from specgen.drafters import load_heads

    target = saved_target(tmp_path)
    out = tmp_path / "medusa"
    random_heads(target, "medusa").save(str(out))
    weights = (out / "heads.safetensors").read_bytes()
    assert main(["calibrate-heads", "--target", str(tmp_path / "target"), "--heads", str(out), "--data",
                 f"{tmp_path}/train.bin:1", "--rules", "sample", "tolerance:5", "--sequences", "4",
                 "--new-tokens", "12", "--prompt-len", "8", "--gen-batch", "4", "--cpu-tree-size", "3", "--cpu"]) == 0
    assert (out / "heads.safetensors").read_bytes() == weights
    heads = load_heads(str(out), target)
    assert set(heads.config["rule_accuracy"]) == {"sample", "tolerance:5"} and heads.config["cpu_tree_size"] == 3
    assert heads.accuracy_for("tolerance:5") == heads.config["rule_accuracy"]["tolerance:5"]
    assert heads.accuracy_for("tolerance:9") == heads.config["topk_accuracy"]  # not calibrated: the greedy table
    assert tree_rule(None, 0.0) == "greedy" and tree_rule(None, 0.7) == "sample"
    assert tree_rule("tolerance", 1.0, {"tolerance": 5}) == "tolerance:5"
    heads.config["rule_accuracy"]["sample"] = [[0.9, 0.0], [0.9, 0.0], [0.9, 0.0], [0.9, 0.0]]  # a pure chain
    chain = [(0,), (0, 0), (0, 0, 0), (0, 0, 0, 0)]
    assert make_drafter("medusa", heads, DraftConfig(tree_size=8), rule="sample").paths == chain
    greedy = heads.config["topk_accuracy"]
    assert main(["calibrate-heads", "--target", str(tmp_path / "target"), "--heads", str(out), "--data",
                 f"{tmp_path}/train.bin:1", "--rules", "drawn", "--only-rules", "--sequences", "4", "--seed", "3",
                 "--new-tokens", "12", "--prompt-len", "8", "--gen-batch", "4", "--cpu"]) == 0
    again = load_heads(str(out), target)  # the drawn table added; the greedy one kept though other prompts ran
    assert set(again.config["rule_accuracy"]) == {"sample", "tolerance:5", "drawn"}
    assert again.config["topk_accuracy"] == greedy
    pipe = TextPipeline.from_pretrained(str(tmp_path / "target"), draft=str(out))
    spec = pipe.generate("def f", max_new_tokens=20)
    assert spec.token_ids == pipe.generate("def f", max_new_tokens=20, method="ar").token_ids


def test_cached_target_view_trains_the_same_heads_as_recomputing_it(tmp_path):
    """--cache-gb keeps the frozen target's hidden states and logits from one pass; the heads come out as if the
    target ran every step."""
    from safetensors.torch import load_file

    saved_target(tmp_path)
    weights = []
    for name, cache in (("cached", "2"), ("recomputed", "0")):
        assert main(["train-heads", "--target", str(tmp_path / "target"), "--kind", "hydra", "--data",
                     f"{tmp_path}/train.bin:1", "--out", str(tmp_path / name), "--sequences", "12",
                     "--heldout-sequences", "4", "--prompt-len", "8", "--new-tokens", "16", "--gen-batch", "6",
                     "--steps", "4", "--batch", "2", "--mixed-precision", "no", "--save-dtype", "float32",
                     "--cache-gb", cache, "--cpu"]) == 0
        weights.append(load_file(str(tmp_path / name / "heads.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], rtol=1e-4, atol=1e-6)
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in weights[0].items() if "inputs" in k)  # it trained


def test_guided_targets_combine_each_row_with_its_unconditioned_twin():
    from specgen.train.heads import target_view

    target = tiny_model("llama", layers=2)
    x = torch.randint(3, 97, (2, 16))
    starts, uncond, scale = torch.tensor([4, 6]), [1, 2], 3.0
    with torch.no_grad():
        hidden, guided = target_view(target, x, (scale, uncond), starts)
        plain_hidden, cond = capture_hidden(target, x)
        assert torch.equal(hidden, plain_hidden)  # the heads read the conditioned states
        for i, s in enumerate(starts.tolist()):
            free = target(torch.tensor([uncond + x[i, s:].tolist()])).logits[0]
            want = free[len(uncond) - 1 :] + scale * (cond[i, s - 1 :] - free[len(uncond) - 1 :])
            assert torch.allclose(guided[i, s - 1 :], want, atol=1e-4)  # from the last prompt token on: guided
            assert torch.equal(guided[i, : s - 1], cond[i, : s - 1])  # inside the prompt: as conditioned


def test_train_heads_with_guidance_needs_the_unconditioned_prompt(tmp_path, capsys):
    from specgen.drafters import load_heads

    target = saved_target(tmp_path)
    args = ["train-heads", "--target", str(tmp_path / "target"), "--kind", "hawk", "--horizontal", "hydra", "--width",
            "4", "--data", f"{tmp_path}/train.bin:1", "--out", str(tmp_path / "hawk"), "--sequences", "8",
            "--heldout-sequences", "2", "--prompt-len", "6", "--new-tokens", "16", "--gen-batch", "4", "--steps", "2",
            "--batch", "2", "--mixed-precision", "no", "--cpu", "--cfg-scale", "2.0"]
    assert main(args) != 0 and "needs --uncond-prompt" in capsys.readouterr().err
    assert main([*args, "--uncond-prompt", "1,2"]) == 0
    heads = load_heads(str(tmp_path / "hawk"), target)
    assert heads.config["guidance"] == {"cfg_scale": 2.0, "uncond_prompt": [1, 2]}
    assert heads.config["horizontal"] == "hydra" and len(heads.config["topk_accuracy"]) == 4 + 2
    pipe = TextPipeline.from_pretrained(str(tmp_path / "target"), draft=str(tmp_path / "hawk"))
    assert pipe.generate("def f", max_new_tokens=20).token_ids == pipe.generate("def f", max_new_tokens=20,
                                                                                method="ar").token_ids


def test_warm_start_grows_a_hydra_set_from_its_last_head(tmp_path):
    """--init copies the heads a set already has and starts each new one as the old last head shifted one token
    along its path; a folder of another kind of heads is refused."""
    from specgen.train.heads import warm_start

    target = tiny_model("llama", vocab=50)
    old = random_heads(target, "hydra", num_heads=2)
    old.save(str(tmp_path / "old"), dtype=torch.float32)
    new = random_heads(target, "hydra", num_heads=3, seed=5)
    filled = warm_start(new, str(tmp_path / "old"))
    assert "inputs.2.weight" in filled and "stacks.2.blocks.0.weight" in filled
    d = new.inputs[0].weight.shape[0]
    for name, t in old.state_dict().items():
        torch.testing.assert_close(new.state_dict()[name], t)
    grown, last = new.inputs[2].weight, old.inputs[1].weight  # [d, 4d] from [d, 3d]
    torch.testing.assert_close(grown[:, :d], last[:, :d])
    assert grown[:, d : 2 * d].abs().sum() == 0
    torch.testing.assert_close(grown[:, 2 * d :], last[:, d:])
    random_heads(target, "medusa", num_heads=2).save(str(tmp_path / "medusa"), dtype=torch.float32)
    with pytest.raises(ValueError, match="those are medusa heads"):
        warm_start(random_heads(target, "hydra", num_heads=2), str(tmp_path / "medusa"))
    with pytest.raises(ValueError, match="no heads.safetensors"):
        warm_start(new, str(tmp_path / "nowhere"))


def test_hydra_token_tables_compute_the_same_heads_and_follow_weight_changes():
    """The drafting shortcut (token columns of each input layer folded into per-vocabulary tables) gives the
    heads' own logits, is skipped with gradients on, and is rebuilt when the weights change in place."""
    target = tiny_model("llama", vocab=50)
    heads = random_heads(target, "hydra", num_heads=3)
    ctx, toks = torch.randn(2, 5, heads.inputs[0].weight.shape[0]), torch.randint(0, 50, (2, 5, 3))
    with torch.no_grad():
        plain = heads.head(2, ctx, toks)
        assert heads.build_token_tables()
        torch.testing.assert_close(heads.head(2, ctx, toks), plain, rtol=1e-4, atol=1e-4)
        heads.inputs[2].weight.mul_(2)
        doubled = heads.head(2, ctx, toks)
    del heads._tables
    with torch.no_grad():
        torch.testing.assert_close(doubled, heads.head(2, ctx, toks), rtol=1e-4, atol=1e-4)
    assert not heads.build_token_tables(max_bytes=1024)  # too big: the plain path stays


@pytest.mark.parametrize("kind", ["medusa", "hydra", "hawk:hydra"])
def test_head_drafters_draw_their_guesses_only_for_lossless_sampling(kind):
    """Under the `sample` rule the children of a node are drawn from the heads' distribution, distinct, each with
    the distribution it was drawn from; greedy decoding, tolerance acceptance and draws='top' take the top-k.
    Hawk (with Hydra++ rows) does the same with its horizontal guesses, by default as the others do."""
    from specgen import CachedLM, Sampling, make_drafter

    target = tiny_model("llama", vocab=40, layers=2)
    heads = random_heads(target, kind)
    kind = kind.partition(":")[0]
    heads.config.setdefault("width", 4)  # Hawk's image rows
    lm = CachedLM(target)
    lm.keep_hidden()
    prompt = [[1, 5, 7, 9, 11]]
    lm.prefill(prompt)
    hidden = lm.hidden.clone()  # the heads share the LM head, whose hook records every call's input

    def tree(rule, sampling, draws="auto"):
        d = make_drafter(kind, heads, DraftConfig(tree_size=8, draws=draws), "sample")
        d.configure(rule)
        d.start(prompt, [3], sampling, 40, torch.device("cpu"), torch.Generator().manual_seed(0), hidden)
        return d.propose(4)

    t = tree("sample", Sampling(temperature=1.0))
    assert t.q is not None and t.q.shape == (1, t.size, 40)
    assert torch.allclose(t.q.sum(-1), torch.ones(1, t.size), atol=1e-5)
    assert (t.q.gather(-1, t.tokens[..., None])[..., 0] > 0).all()  # every guess has mass where it was drawn from
    parents = t.parents[0].tolist()
    for p in set(parents):
        siblings = [t.tokens[0, i].item() for i in range(t.size) if parents[i] == p]
        assert len(siblings) == len(set(siblings))
    assert tree("tolerance", Sampling(temperature=1.0)).q is None
    assert tree("greedy", Sampling()).q is None
    assert tree("sample", Sampling(temperature=1.0), draws="top").q is None
    with pytest.raises(ValueError, match="draws must be one of"):
        make_drafter(kind, heads, DraftConfig(draws="random"))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_hydra_window_holds_each_rows_newest_accepted_states(temperature, monkeypatch):
    """The prefix window a Hydra++ round attends to is, for every row, its newest `window` hidden states
    (prompt, then each accepted path's), whatever each row accepted, with rows of different prompt lengths
    and a row leaving the batch early."""
    from specgen import CachedLM, Sampling, generate, make_drafter
    from specgen.drafters import KINDS, HydraDrafter

    w = 5
    target = tiny_model("llama", vocab=97, init=0.5, seed=3)
    torch.manual_seed(5)
    heads = KINDS["hydra"]({"hidden_size": 32, "num_heads": 4, "window": w}, target).eval()
    with torch.no_grad():
        for p in heads.parameters():
            p.normal_(0, 2.0 / p.shape[-1] ** 0.5 if p.dim() > 1 else 2.0)
    rows, checked = [], []
    start, accept, select, propose = HydraDrafter.start, HydraDrafter.accept, HydraDrafter.select, HydraDrafter.propose

    def spy_start(self, prompts, first, sampling, vocab, device, generator=None, hidden=None):
        start(self, prompts, first, sampling, vocab, device, generator, hidden)
        rows[:] = [hidden[b, hidden.shape[1] - len(p):].to(self.dtype) for b, p in enumerate(prompts)]

    def spy_accept(self, emitted, paths, hidden=None):
        rows[:] = [torch.cat([r, hidden[b, p].to(self.dtype)]) for b, (r, p) in enumerate(zip(rows, paths))]
        accept(self, emitted, paths, hidden)

    def spy_select(self, keep):
        rows[:] = [rows[r] for r in keep]
        select(self, keep)

    def spy_propose(self, k):
        tree = propose(self, k)  # the window it attended to is the drafter's window now
        for b, r in enumerate(rows):
            want = r[-w:]
            assert int(self.valid[b].sum()) == len(want)
            torch.testing.assert_close(self.buffer[b][self.valid[b]], want)
            torch.testing.assert_close(self.memory[b][self.valid[b]], self.heads.prefix.memory(want))
        checked.append(len(rows))
        return tree

    for name, fn in (("start", spy_start), ("accept", spy_accept), ("select", spy_select), ("propose", spy_propose)):
        monkeypatch.setattr(HydraDrafter, name, fn)
    drafter = make_drafter("hydra", heads, DraftConfig(tree_size=7, dtype=torch.float32))
    prompts = [[5, 6, 7, 8, 9, 10, 11, 12], [9, 10], [3], [4, 5, 6]]
    stop = lambda row, toks: 6 if row == 1 and len(toks) >= 6 else None  # noqa: E731 (row 1 leaves early)
    generate(CachedLM(target), prompts, drafter, Sampling(temperature=temperature), 30, 8, stop=stop,
             generator=torch.Generator().manual_seed(0))
    assert len(checked) > 5 and min(checked) < 4  # rounds ran before and after row 1 left


def test_heads_over_a_trimmed_vocabulary_train_from_ready_continuations_and_decode_exactly(tmp_path, capsys):
    """`--draft-vocab`: the heads guess among the listed target ids only (their LM head is those rows); trained from
    flat token files (`--selfdistill`), calibrated, loaded beside the target, exact; other kinds refuse a map."""
    import json

    target = saved_target(tmp_path)
    keep = list(range(0, 300, 2))  # every even id
    (tmp_path / "vocab.json").write_text(json.dumps(keep))
    eos = target.config.eos_token_id
    rows = np.random.default_rng(1).integers(4, 300, (20, 40))
    np.concatenate([np.append(r, eos) for r in rows]).astype(np.uint32).tofile(tmp_path / "gen.u32")
    out = tmp_path / "hydra"
    assert main(["train-heads", "--target", str(tmp_path / "target"), "--kind", "hydra", "--data",
                 f"{tmp_path}/train.bin:1", "--out", str(out), "--heldout-sequences", "4", "--steps", "3",
                 "--batch", "2", "--mixed-precision", "no", "--cpu", "--draft-vocab", str(tmp_path / "vocab.json"),
                 "--selfdistill", str(tmp_path / "gen.u32")]) == 0
    pipe = TextPipeline.from_pretrained(str(tmp_path / "target"), draft=str(out))
    heads = pipe.draft
    assert heads.config["draft_to_target"] == keep and heads.lm_head.weight.shape[0] == len(keep)
    assert heads.config["training"]["sequences"] == 16  # 20 rows, 4 held out
    assert torch.equal(heads.lm_head.weight, target.get_output_embeddings().weight[keep].to(heads.lm_head.weight))
    spec = pipe.generate("def f", max_new_tokens=20)
    assert spec.token_ids == pipe.generate("def f", max_new_tokens=20, method="ar").token_ids
    with pytest.raises(ValueError, match="cannot guess over a trimmed vocabulary"):
        random_heads(target, "redrafter", draft_to_target=keep)
    assert main(["train-heads", "--target", str(tmp_path / "target"), "--kind", "hydra", "--data",
                 f"{tmp_path}/train.bin:1", "--out", str(tmp_path / "x"), "--draft-vocab", str(tmp_path / "none"),
                 "--selfdistill", str(tmp_path / "gen.u32"), "--mixed-precision", "no", "--cpu"]) == 2
    assert "--draft-vocab" in capsys.readouterr().err and not (tmp_path / "x").exists()
