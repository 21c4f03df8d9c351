"""What every kind of draft head shares: the heads module's base (a config, saving beside a target, loading onto
it), and the drafting every head method builds on (the hidden state at each row's last accepted node, sparse trees
shaped by calibrated acceptance rates, a drafting copy in the drafting precision). Each method's heads, drafter and
tree shaping live in its own file: medusa.py (with KOALA), hydra.py, redrafter.py, hawk.py.

Heads reuse the target's LM head for their vocabulary projections (the zoo stores no copy of it), so loading
needs the target model.
"""
from __future__ import annotations

import copy
import json
import os
from abc import ABC, abstractmethod

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .. import kernels
from ..loading import storage_tensors
from ..sampling import draw_distinct
from ..tree import DraftTree, sparse_tree, tree_tensors
from ..vocab_map import VocabMap
from .base import Drafter

KINDS: dict[str, type] = {}


def register(kind: str):
    def deco(cls):
        cls.kind = kind
        KINDS[kind] = cls
        return cls
    return deco


class DraftHeads(nn.Module, ABC):
    """Base class: `config` is plain JSON; the target's LM head and token embeddings are attached, not owned
    (neither trained nor saved).

    With `draft_to_target` in the config (target ids, EAGLE-3's trimmed vocabulary, `specgen.vocab_map`) the heads
    guess among those ids only: they read the LM head's and the embeddings' rows for them (a target with a
    262k-word vocabulary then costs a head a few-percent product, not its whole LM head), their logits and
    token inputs are in draft ids (a target token outside the map enters as one extra unknown id), and the drafter
    hands the target its own ids and distributions that are zero outside the map (so acceptance stays exact)."""

    kind = "heads"
    trims_vocab = False  # whether this kind can guess over a trimmed vocabulary

    def __init__(self, config: dict, target):
        super().__init__()
        self.config = dict(config)
        out, emb = target.get_output_embeddings(), target.get_input_embeddings()
        self.vocab_map: VocabMap | None = None
        if self.config.get("draft_to_target") is not None:
            if not self.trims_vocab:
                raise ValueError(f"{self.kind} heads cannot guess over a trimmed vocabulary (draft_to_target): "
                                 f"train medusa, koala or hydra heads for that, or leave the vocabulary whole")
            out, emb, self.vocab_map = trimmed_modules(out, emb, self.config["draft_to_target"])
        # a list keeps the target's modules out of this module's parameters and state dict
        self._target = [out, emb]

    def to_draft(self, ids: torch.Tensor) -> torch.Tensor:
        """Target token ids as the heads' token ids (the same ids unless the vocabulary is trimmed)."""
        return ids if self.vocab_map is None else self.vocab_map.to_draft(ids)

    def restrict(self, target_logits: torch.Tensor) -> torch.Tensor:
        """The target's logits [..., vocab] over the heads' vocabulary: what they learn to match."""
        return target_logits if self.vocab_map is None else target_logits[..., self.vocab_map.d2t]

    @property
    def lm_head(self) -> nn.Module:
        return self._target[0]

    @property
    def embed(self) -> nn.Module:
        return self._target[1]

    @property
    def num_heads(self) -> int:
        return self.config["num_heads"]

    @property
    def offsets(self) -> list[int]:
        """Head j at position t guesses the token at t + 1 + offsets[j] (Medusa-style heads: t+2, t+3, ...)."""
        return list(range(1, self.num_heads + 1))

    def drafting_copy(self, dtype: torch.dtype) -> "DraftHeads":
        """These heads in `dtype`, with their own copies of the target's LM head and embeddings (the target keeps
        its own), for drafting; self when they already are in `dtype`. Kept and reused until a weight changes or
        moves; the copy shares this object's config, so settings changed later (a tree size, say) apply to it.
        Guesses are checked by the target, so the heads' precision moves speed, never what is accepted."""
        tensors = [*self.parameters(), *(m.weight for m in self._target)]
        if all(t.dtype == dtype for t in tensors):
            return self
        key = (dtype, weights_state(tensors))
        kept = self.__dict__.get("_drafting")
        if kept is not None and kept[0] == key:
            return kept[1]
        own = [m for m in self.modules() if isinstance(m, DraftHeads)]  # Hawk's Hydra++ rows are heads too
        aside = [{k: m.__dict__.pop(k) for k in ("_drafting", "_tables", "_sources") if k in m.__dict__} for m in own]
        try:
            clone = copy.deepcopy(self)  # the target's modules too (through _target), shared ones once
        finally:
            for m, kept_state in zip(own, aside):
                m.__dict__.update(kept_state)
        for original, m in zip(own, [m for m in clone.modules() if isinstance(m, DraftHeads)]):
            m.config = original.config
            m._target = [t.to(dtype) for t in m._target]
            for t in m._target:  # a copied forward hook (CachedLM's hidden-state listener) would only cost time
                t._forward_hooks.clear()
                t._forward_pre_hooks.clear()
        self._drafting = (key, clone.to(dtype).eval())
        return clone

    @abstractmethod
    def train_logits(self, hidden, tokens):
        """Teacher-forced training view: hidden [batch, L, dim] and tokens [batch, L] -> logits
        [batch, L, heads, vocab], where entry (t, i) guesses token t+2+i."""

    def save(self, path: str, dtype: torch.dtype | None = None):
        """heads.safetensors (in `dtype`, default as trained; loading casts to the target's), then heads.json (kind
        and config), each written whole under a temporary name."""
        os.makedirs(path, exist_ok=True)
        weights = os.path.join(path, "heads.safetensors")
        save_file(storage_tensors(self.state_dict(), dtype), weights + ".tmp")
        os.replace(weights + ".tmp", weights)
        write_json(os.path.join(path, "heads.json"), {"kind": self.kind, **self.config})

    def accuracy_for(self, rule: str | None = None) -> list[list[float]] | None:
        """The calibration table that shapes trees for an acceptance rule ('sample', 'tolerance:3', ...), falling
        back to the greedy table (`topk_accuracy`) when that rule was not calibrated."""
        return (self.config.get("rule_accuracy") or {}).get(rule) or self.config.get("topk_accuracy")


def trimmed_modules(lm_head: nn.Module, embed: nn.Module, draft_to_target: list[int]):
    """Frozen copies of a target's LM head and embeddings cut to the rows of `draft_to_target`, the embeddings
    with one more row (the mean of the others) for target tokens outside it, and the map between the ids."""
    w = lm_head.weight.detach()
    vocab_map = VocabMap(draft_to_target, len(draft_to_target), len(draft_to_target) + 1, w.shape[0], w.device)
    head = nn.Linear(w.shape[1], len(draft_to_target), bias=lm_head.bias is not None, device=w.device, dtype=w.dtype)
    head.weight = nn.Parameter(w[vocab_map.d2t].clone(), requires_grad=False)
    if lm_head.bias is not None:
        head.bias = nn.Parameter(lm_head.bias.detach()[vocab_map.d2t].clone(), requires_grad=False)
    e = embed.weight.detach()[vocab_map.d2t]
    table = nn.Embedding(e.shape[0] + 1, e.shape[1], device=e.device, dtype=e.dtype)
    table.weight = nn.Parameter(torch.cat([e, e.mean(0, keepdim=True)]), requires_grad=False)
    return head, table, vocab_map


def weights_state(tensors) -> tuple:
    """What identifies the current values of some weights: each tensor's storage, in-place version, dtype and
    device. Anything built from them (a drafting copy, lookup tables) is stale once this changes."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)


def write_json(path: str, data: dict):
    """Write a JSON file whole under a temporary name, then move it into place."""
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)


def write_config(path: str, updates: dict):
    """Merge `updates` into the heads.json of a heads folder (the weights stay as they are)."""
    meta = os.path.join(path, "heads.json")
    with open(meta) as f:
        config = json.load(f)
    write_json(meta, {**config, **updates})


def load_heads(path: str, target_model, narrow: bool = False) -> DraftHeads:
    """Heads saved by `DraftHeads.save`, attached to `target_model` (same device and dtype); `narrow`: their
    `nn.Linear` layers compute few rows by specgen's CPU products (`specgen.kernels.narrow_matmuls`)."""
    meta = os.path.join(path, "heads.json")
    if not os.path.isfile(meta):
        raise ValueError(f"{path!r} holds no draft heads (no heads.json): train them with `specgen train-heads`")
    with open(meta) as f:
        config = json.load(f)
    kind = config.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"{path!r} holds heads of unknown kind {kind!r}: known kinds are {sorted(KINDS)}")
    hidden = target_model.get_output_embeddings().weight.shape[1]
    if config.get("hidden_size") != hidden:
        raise ValueError(f"the heads in {path!r} were trained for hidden size {config.get('hidden_size')}, but this "
                         f"target's is {hidden}: train heads for this target")
    param = next(target_model.parameters())
    heads = KINDS[kind](config, target_model)
    heads.load_state_dict(load_file(os.path.join(path, "heads.safetensors")))
    heads = heads.to(device=param.device, dtype=param.dtype).eval()
    return kernels.narrow_matmuls(heads) if narrow else heads


def default_accuracy(num_heads: int, ranks: int = 8) -> list[list[float]]:
    """A prior for uncalibrated heads: deeper heads and lower ranks are right less often."""
    return [[0.6 ** (d + 1) / (r + 1) for r in range(ranks)] for d in range(num_heads)]


def head_rates(accuracy: list[list[float]], num_heads: int, vocab: int) -> list[list[float]]:
    """A calibration table's rows for the horizontal heads, no rank beyond the vocabulary."""
    return [row[:vocab] for row in accuracy[:num_heads]]


def head_tree(rates: list[list[float]], size: int) -> list[tuple[int, ...]]:
    """The `size` candidate paths of head ranks (`sparse_tree`), depth first, lower ranks first (tuple order): the
    run of first guesses takes the first node indices, so accepting along it keeps a prefix of the verified nodes
    (the target's cache is cropped, not gathered), and Hawk's vertical run hangs below node `chain` - 1; a parent
    still precedes its children, and siblings keep their rank order."""
    return sorted(sparse_tree(rates, size))


CPU_TREE_SIZE, CUDA_TREE_SIZE = 8, 32
DRAWS = ("auto", "top", "sample")


def default_draft_dtype(heads: DraftHeads) -> torch.dtype:
    """The precision heads draft in when the caller names none: fp16 for fp32 heads on a CPU, else their own.
    A draft step reads every head's weights once, and by then the target's forward has pushed them out of the
    cache: on the AVX2 CPU of the README's benchmarks a one-row fp16 product of a 384 x 384 matrix read from
    memory took 0.40 of the fp32 time (`scripts/bench_draft_precision.py`). Precision changes which guesses are
    made, never whether the output is exact: the target checks them, and a drawn guess is tested against the very
    distribution it was drawn from (an fp16 overflow only costs guesses)."""
    dtype = heads.lm_head.weight.dtype
    return torch.float16 if heads.lm_head.weight.device.type == "cpu" and dtype == torch.float32 else dtype


def drafting_heads(heads: DraftHeads, dtype: torch.dtype | None) -> DraftHeads:
    """The heads a drafter runs: their kept copy in `dtype` (default `default_draft_dtype`), with the few-row CPU
    product switched on where it applies; the heads themselves where they already are in `dtype` (the caller's,
    left as they were loaded: `load_heads(..., narrow=True)` switches them)."""
    copy = heads.drafting_copy(dtype or default_draft_dtype(heads))
    return copy if copy is heads else kernels.narrow_matmuls(copy)


def default_tree_size(heads: DraftHeads) -> int:
    """Candidate-tree nodes per round when the caller names none. On a GPU a forward over 32 tokens costs about
    what one costs (memory-bound), so a wide tree is free; on a CPU a small model's forward grows with the
    tokens it reads, and a small tree is faster overall (measured in the README's speech and text benchmarks).
    Heads may carry their own measured CPU size (`cpu_tree_size` in heads.json)."""
    if heads.lm_head.weight.device.type == "cuda":
        return CUDA_TREE_SIZE
    return int(heads.config.get("cpu_tree_size", CPU_TREE_SIZE))


class HeadDrafter(Drafter):
    """What head drafters share: the hidden state at each row's last accepted node and its pending root token."""

    needs_hidden = True
    drawn = False  # this batch's children are drawn (`start`)

    def __init__(self, heads: DraftHeads, tree_size: int | None = None, rule: str | None = None,
                 table: list[list[float]] | None = None, draws: str = "auto", dtype: torch.dtype | None = None):
        """rule: the acceptance rule the tree is shaped for ('greedy', 'sample', 'tolerance:K'); its calibration
        table from heads.json when there is one (`specgen calibrate-heads`), else the greedy table (`table`
        overrides both). The shape changes speed only, never what is accepted.
        draws: how a node's children are picked: 'top', the heads' top-k; 'sample', drawn without replacement
        from the heads' distribution after the decode's temperature, top-k and top-p (`draw_distinct`), which
        under the lossless `sample` rule is accepted with probability 1 - TV(target, head) instead of the
        target's probability of the head's favourite; 'auto', drawn when the decode samples with that rule.
        dtype: the precision the heads draft in (default: `default_draft_dtype`)."""
        tree_size = default_tree_size(heads) if tree_size is None else tree_size
        if tree_size < 1:
            raise ValueError(f"tree_size must be >= 1, got {tree_size}")
        if draws not in DRAWS:
            raise ValueError(f"draws must be one of {', '.join(DRAWS)}, got {draws!r}")
        self.heads = drafting_heads(heads, dtype)
        self.dtype = self.heads.lm_head.weight.dtype
        self.name = heads.kind
        self.draws = draws
        vocab = heads.lm_head.weight.shape[0]

        def tree_for(accuracy):
            return head_tree(head_rates(accuracy, heads.num_heads, vocab), tree_size)

        self.paths = tree_for(table or heads.accuracy_for(rule) or default_accuracy(heads.num_heads))
        # when the decode turns out to draw (`start`), the tree calibrated for drawn children, if there is one
        # (`specgen calibrate-heads --rules drawn`)
        drawn = None if table or draws == "top" else (heads.config.get("rule_accuracy") or {}).get("drawn")
        self.drawn_paths = tree_for(drawn) if drawn else self.paths
        self.forwards = 0

    def configure(self, acceptance: str, blocked: torch.Tensor | None = None):
        vocab_map = self.heads.vocab_map  # barred target tokens as barred head tokens
        super().configure(acceptance, blocked if blocked is None or vocab_map is None else blocked[vocab_map.d2t])

    def start(self, prompts, first, sampling, vocab, device, generator=None, hidden=None):
        super().start(prompts, first, sampling, vocab, device, generator)
        self.drawn = not sampling.greedy and (self.draws == "sample" or
                                              (self.draws == "auto" and self.acceptance == "sample"))
        self.h = hidden[:, -1].to(self.dtype)  # [batch, dim]: the state whose next token is the pending root
        self.root = self.heads.to_draft(torch.tensor(first, device=hidden.device))

    def in_target(self, tree: DraftTree) -> DraftTree:
        """A tree of the heads' ids in the target's ids (and, when drawn, its distributions over the target's
        vocabulary): a trimmed vocabulary's way out; the tree itself otherwise."""
        vocab_map = self.heads.vocab_map
        if vocab_map is None:
            return tree
        q = None if tree.q is None else vocab_map.probs_to_target(tree.q)
        return DraftTree(vocab_map.d2t[tree.tokens], tree.parents, tree.valid, q)

    def accept(self, emitted, paths, hidden=None):
        last = torch.tensor([p[-1] for p in paths], device=hidden.device)
        self.advance(emitted, hidden[torch.arange(hidden.shape[0], device=hidden.device), last])

    def advance(self, emitted, h: torch.Tensor):
        """Each row's next draft state: h [batch, dim], the hidden state at its last accepted node, and its pending
        root, the last token it emitted."""
        self.h = h.to(self.dtype)
        self.root = self.heads.to_draft(torch.tensor([e[-1] for e in emitted], device=h.device))

    def select(self, rows):
        self.h, self.root = self.h[rows], self.root[rows]

    def tree(self, k: int):
        paths = [p for p in (self.drawn_paths if self.drawn else self.paths) if len(p) <= k]
        return paths, *tree_tensors(paths)

    def use_drawn_paths(self, paths: list[tuple[int, ...]]):
        """Draw into this tree from now on (Hawk gives part of its budget to vertical guesses, `HawkDrafter`)."""
        self.drawn_paths = paths

    def children(self, logits: torch.Tensor, n: int):
        """A parent's n children from head logits [..., vocab]: tokens [..., n], what each was drawn from
        [..., n, vocab] (None for the deterministic top-n) and which are real [..., n]."""
        if self.drawn:
            if self.blocked is not None:
                logits = logits.masked_fill(self.blocked, float("-inf"))
            return draw_distinct(self.sampling.probs(logits), n, self.generator)
        top = logits.topk(n, dim=-1).indices
        return top, None, torch.ones_like(top, dtype=torch.bool)


def prefix_tree(beams: list[list[list[int]]], device) -> DraftTree:
    """Token sequences [batch][sequence][depth] (of any lengths) merged into one prefix tree per row: shared
    prefixes become one node, so siblings are distinct tokens; rows are padded with invalid nodes."""
    rows = []
    for row in beams:
        index, toks, pars = {}, [], []
        for beam in row:
            for j in range(len(beam)):
                key = tuple(beam[: j + 1])
                if key not in index:
                    index[key] = len(toks)
                    toks.append(beam[j])
                    pars.append(index[key[:-1]] if j else -1)
        rows.append((toks, pars))
    n = max(len(t) for t, _ in rows)
    tokens = torch.zeros(len(rows), n, dtype=torch.long)
    parents = torch.full((len(rows), n), -1, dtype=torch.long)
    valid = torch.zeros(len(rows), n, dtype=torch.bool)
    for i, (t, p) in enumerate(rows):
        tokens[i, : len(t)], parents[i, : len(p)], valid[i, : len(t)] = torch.tensor(t), torch.tensor(p), True
    return DraftTree(tokens.to(device), parents.to(device), valid.to(device))
