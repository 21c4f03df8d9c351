"""A causal LM with its KV cache, driven by explicit per-row positions and attention masks.

This is the design's Target: prefill, verification of a draft chain or tree in one forward, and commit of exactly
the accepted nodes. Draft models use the same wrapper. The cache stays rectangular across the batch: every slot
has a per-row validity bit, so rows that accept different numbers of tokens leave masked holes rather than
forcing a cut to the shortest acceptance. Positions are explicit per row, so holes change nothing a row computes.

Slots appended by `step` are pending until `commit` keeps some of them (chains: a crop; anything else: a gather).
Works with any `transformers` causal LM that accepts a 4-D float attention mask, position ids and a `DynamicCache`
(checked on Llama, Qwen2, Qwen3, Mistral, GPT-2 and Gemma 3). Sliding-window attention is applied through the mask,
by each slot's position: models that mix sliding and global layers (Gemma 3) get one mask per layer type.
"""
from __future__ import annotations

import weakref

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .tree import ancestry


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values are views of a larger buffer: a forward writes its new slots in place
    instead of `torch.cat` copying the whole layer (every forward, for every layer). Capacity doubles when it runs
    out. Crops keep views of the buffer, so the next forward overwrites the dropped slots; where something put a
    tensor of its own in place of the view (`batch_select_indices`, say), the next update copies it into a new
    buffer. Same keys and values, so the same logits, bit for bit. `limit`: the model's context, which a buffer
    only outgrows for the pending slots of a verification."""

    def __init__(self, limit: int | None = None):
        super().__init__()
        self.limit = limit

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        store = getattr(self, "_store", None)
        old = self.keys.shape[-2] if self.keys.dim() == key_states.dim() else 0  # (lazy init leaves a 1-d empty)
        new = old + key_states.shape[-2]
        if (store is None or new > store[0].shape[-2] or store[0].shape[:-2] != key_states.shape[:-2]
                or old and self.keys.data_ptr() != store[0].data_ptr()):
            room = max(2 * new, 64) if self.limit is None else min(max(2 * new, 64), self.limit)
            shape = (*key_states.shape[:-2], max(new, room), key_states.shape[-1])
            store = self._store = (key_states.new_empty(shape), value_states.new_empty(shape))
            if old:
                store[0][..., :old, :] = self.keys
                store[1][..., :old, :] = self.values
        store[0][..., old:new, :] = key_states
        store[1][..., old:new, :] = value_states
        self.keys, self.values = store[0][..., :new, :], store[1][..., :new, :]
        return self.keys, self.values

    def reset(self) -> None:
        self._store = None
        super().reset()


def growing_cache(limit: int | None = None) -> DynamicCache:
    """A DynamicCache of `GrowingLayer`s (added lazily, one per attention layer, as DynamicCache adds its own),
    none of them longer than `limit` slots unless a forward needs it."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = lambda: GrowingLayer(limit)
    return cache


def context_length(config) -> int | None:
    """The model's maximum number of positions, from whichever field its config uses."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(config, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def listen_hidden(model, store, owner: weakref.ref | None = None):
    """Hand the LM head's input (the final hidden states [batch, n, dim]) of every forward to `store`. `owner`: a
    weak reference to what the listener serves; listeners whose owner is gone are removed here, when the next one
    is added (not from a garbage-collector callback, which could run while torch.compile reads the hooks)."""
    def hook(module, args, out):
        store(args[0])  # and return None: a forward hook's return value would replace the logits

    head = model.get_output_embeddings()
    for key, old in list(head._forward_hooks.items()):
        gone = getattr(old, "specgen_owner", None)
        if gone is not None and gone() is None:
            del head._forward_hooks[key]
    hook.specgen_owner = owner
    return head.register_forward_hook(hook)


def vocab_size(model) -> int:
    """Size of the model's output distribution."""
    return model.get_output_embeddings().weight.shape[0]


class CachedLM:
    """A causal LM plus a batch-rectangular KV cache with per-slot validity and per-row positions."""

    def __init__(self, model):
        self.model = model.eval()  # its products as loaded (narrow ones: `load_causal_lm(..., narrow=True)`)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.context = context_length(model.config)
        self.window = sliding_window(model.config)
        types = getattr(model.config, "layer_types", None) or ()
        self.mixed_window = self.window is not None and "full_attention" in types  # one mask per layer type
        self.vocab = vocab_size(model)
        self.forwards = 0
        self.hidden = None  # [batch, n, hidden] of the last step, once keep_hidden() was called
        self._last_tree = None  # (parents, valid, their ancestry) of the last tree verified
        self._hook = None
        self.reset(0)

    def keep_hidden(self):
        """From now on record each step's final hidden states (the LM head's input) in `self.hidden`; draft heads
        read them. Works for any architecture, since it listens at the output embeddings."""
        if self._hook is None:
            ref = weakref.ref(self)  # the hook lives on the model: it must not keep this wrapper (and its cache) alive

            def store(h):
                lm = ref()
                if lm is not None:
                    lm.hidden = h

            self._hook = listen_hidden(self.model, store, ref)  # (removed by a later listener once this is gone)

    def reset(self, batch: int):
        self.cache = growing_cache(self.context)
        self.slot_valid = torch.zeros(batch, 0, dtype=torch.bool, device=self.device)  # [batch, slots]
        self.slot_pos = torch.zeros(batch, 0, dtype=torch.long, device=self.device)  # [batch, slots] positions
        self.pos = torch.zeros(batch, dtype=torch.long, device=self.device)  # committed tokens per row
        self.pending = 0  # trailing slots not yet committed

    @property
    def batch(self) -> int:
        return self.pos.shape[0]

    def check_length(self, total: int):
        """Refuse sequences the model cannot position (a clear error instead of an index error deep in torch)."""
        if self.context is not None and total > self.context:
            raise ValueError(f"{total} tokens exceed the model's context of {self.context}: shorten the prompt "
                             f"or lower max_new_tokens")

    @torch.inference_mode()
    def prefill(self, rows: list[list[int]]) -> torch.Tensor:
        """Start a batch from token lists of any lengths (left-padded inside); returns the last tokens' logits
        [batch, vocab]."""
        lengths = torch.tensor([len(r) for r in rows], device=self.device)
        width = int(lengths.max())
        tokens = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for i, r in enumerate(rows):
            tokens[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        valid = torch.arange(width, device=self.device)[None, :] >= (width - lengths)[:, None]
        self.reset(len(rows))
        # only the last logits are needed, unless draft heads listen to every prompt position's hidden state
        logits = self.step(tokens, valid=valid, last_only=self._hook is None)
        self.commit_all()
        return logits[:, -1]

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, parents: torch.Tensor | None = None, valid: torch.Tensor | None = None,
             last_only: bool = False):
        """Append nodes [batch, n] as pending slots and return their logits [batch, n, vocab] ([batch, 1, vocab]
        for the last node alone with `last_only`).

        Each node sees the committed valid slots, every earlier pending valid slot, and its ancestors among these
        nodes (parents [batch, n], -1 = none; None = a chain over the valid nodes).
        Its position is the row's committed length + earlier pending valid slots + its depth.
        """
        b, n = tokens.shape
        if valid is None:
            valid = torch.ones(b, n, dtype=torch.bool, device=self.device)
        if parents is None:  # chain over valid nodes: node i sees valid j <= i
            tri = torch.ones(n, n, dtype=torch.bool, device=self.device).tril()
            eye = torch.eye(n, dtype=torch.bool, device=self.device)
            anc = tri & valid[:, None, :] & valid[:, :, None] | eye
            depth = (valid.cumsum(1) - 1).clamp(min=0)
        else:
            anc, depth = self._ancestry(parents, valid)
        slots = self.slot_valid.shape[1]
        base = self.pos + self.slot_valid[:, slots - self.pending:].sum(1)  # [batch]
        positions = base[:, None] + depth
        see = torch.cat([self.slot_valid[:, None, :].expand(b, n, slots), anc], 2)  # [batch, n, slots + n]
        slot_pos = torch.cat([self.slot_pos, positions], 1)  # [batch, slots + n]
        mask = self._additive(see)
        if self.window is not None:  # a slot is in the window when its position is within `window` of the node's
            near = slot_pos[:, None, :] > positions[:, :, None] - self.window
            windowed = self._additive(see & near)
            mask = {"full_attention": mask, "sliding_attention": windowed} if self.mixed_window else windowed
        extra = {"logits_to_keep": 1} if last_only else {}
        out = self.model(input_ids=tokens, attention_mask=mask, position_ids=positions,
                         past_key_values=self.cache, use_cache=True, **extra)
        self.forwards += 1
        self.slot_valid = torch.cat([self.slot_valid, valid], 1)
        self.slot_pos = slot_pos
        self.pending += n
        return out.logits

    def _additive(self, see: torch.Tensor) -> torch.Tensor:
        """A boolean visibility [batch, n, slots] as the additive float mask [batch, 1, n, slots] models take."""
        mask = torch.zeros(see.shape, dtype=self.dtype, device=self.device)
        return mask.masked_fill_(~see, torch.finfo(self.dtype).min)[:, None]

    def _ancestry(self, parents: torch.Tensor, valid: torch.Tensor):
        """`ancestry`, reused while the tree stays the same: a head drafter's tree has one shape every round."""
        last = self._last_tree
        if (last is not None and last[0].shape == parents.shape and torch.equal(last[0], parents)
                and torch.equal(last[1], valid)):
            return last[2]
        out = ancestry(parents, valid)
        self._last_tree = (parents.clone(), valid.clone(), out)
        return out

    def commit_all(self):
        """Keep every pending slot."""
        self.pos = self.pos + self.slot_valid[:, self.slot_valid.shape[1] - self.pending:].sum(1)
        self.pending = 0

    @torch.inference_mode()
    def commit(self, keep: list[list[int]]):
        """Keep, per row, the pending slots listed (indices into the pending region, in order); drop the rest.

        Rows keep different numbers; shorter rows get masked holes. When every row keeps the same prefix, the
        cache is cropped; otherwise the kept keys and values are gathered into place.
        """
        width = max((len(k) for k in keep), default=0)
        start = self.slot_valid.shape[1] - self.pending
        if all(k == list(range(width)) for k in keep):
            self._crop(start + width)
        else:
            idx = torch.zeros(self.batch, width, dtype=torch.long, device=self.device)
            kept = torch.zeros(self.batch, width, dtype=torch.bool, device=self.device)
            for i, k in enumerate(keep):
                idx[i, : len(k)] = torch.tensor(k, dtype=torch.long)
                kept[i, : len(k)] = True
            for layer in self.cache.layers:
                for name in ("keys", "values"):
                    t = getattr(layer, name)  # [batch, heads, slots, dim]
                    region = t[:, :, start:]
                    g = idx[:, None, :, None].expand(-1, region.shape[1], -1, region.shape[3])
                    t[:, :, start : start + width] = region.gather(2, g)  # in place: the cache is not copied
            valid_region = self.slot_valid[:, start:].gather(1, idx) & kept
            pos_region = self.slot_pos[:, start:].gather(1, idx)
            self._crop(start + width)
            self.slot_valid = torch.cat([self.slot_valid[:, :start], valid_region], 1)
            self.slot_pos = torch.cat([self.slot_pos[:, :start], pos_region], 1)
        self.pending = width
        self.commit_all()

    def _crop(self, length: int):
        drop = self.slot_valid.shape[1] - length
        if drop > 0:
            self.cache.crop(-drop)
            self.slot_valid = self.slot_valid[:, :length]
            self.slot_pos = self.slot_pos[:, :length]

    def select(self, rows: torch.Tensor):
        """Keep only these batch rows (finished rows leave the batch)."""
        self.cache.batch_select_indices(rows)
        self.slot_valid = self.slot_valid[rows]
        self.pos = self.pos[rows]
        self.slot_pos = self.slot_pos[rows]


def sliding_window(config) -> int | None:
    """The sliding attention window if the model uses one on any layer, else None."""
    w = getattr(config, "sliding_window", None)
    if not isinstance(w, int) or w <= 0:
        return None
    types = getattr(config, "layer_types", None)
    if types is not None and "sliding_attention" not in types:
        return None
    if getattr(config, "use_sliding_window", True) is False:
        return None
    return w
