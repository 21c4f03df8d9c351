"""TextPipeline: a target causal LM, an optional draft, and a tokenizer behind one generate/stream API."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

import os

from specgen import CachedLM, DraftConfig, Sampling, Stats, make_drafter, stream, tree_rule
from specgen.acceptance import tolerance_options
from specgen.drafters import METHODS, DraftHeads, load_heads, pard_token_of
from specgen.loading import load_causal_lm, load_tokenizer
from specgen.loop import run_to_end


@dataclass
class TextOutput:
    text: str
    token_ids: list[int]
    stats: Stats
    finish_reason: str  # "eos", "length" or "stop"

    def as_dict(self) -> dict:
        return {"text": self.text, "token_ids": self.token_ids, "finish_reason": self.finish_reason,
                "stats": self.stats.as_dict()}


def default_method(draft) -> str:
    """The heads' kind for draft heads, pard for a PARD draft, draft_model for another draft, ar without one."""
    if draft is None:
        return "ar"
    if isinstance(draft, DraftHeads):
        return draft.kind
    return "pard" if getattr(draft.config, "pard_token", None) is not None else "draft_model"


class TextPipeline:
    """Speculative text generation: `generate` for results, `stream` for text as it is accepted."""

    def __init__(self, model, tokenizer, draft=None, method: str | None = None, num_draft_tokens: int = 8,
                 draft_tokenizer=None, drafting: DraftConfig | None = None):
        """draft: a draft causal LM (pard, draft_model) or DraftHeads on `model` (medusa, ...); drafting: how head
        methods draft (`DraftConfig`), unless a generate call names its own."""
        self.target = CachedLM(model)
        self.tokenizer = tokenizer
        self.draft = draft
        if draft is not None and not isinstance(draft, DraftHeads):
            check_same_vocabulary(tokenizer, draft_tokenizer, self.target.vocab, draft)
        self.method = method or default_method(draft)
        self.num_draft_tokens = num_draft_tokens
        self.drafting = drafting or DraftConfig()
        self._drafters = {}
        self.drafter(self.method)  # refuse an impossible method now, not at the first prompt

    @classmethod
    def from_pretrained(cls, path: str, draft: str | None = None, method: str | None = None, device=None,
                        dtype=None, num_draft_tokens: int = 8, drafting: DraftConfig | None = None) -> "TextPipeline":
        """Load a target (and a draft) from local checkpoint folders; device and dtype are automatic unless given."""
        from .gemma import resolve_model

        path = resolve_model(path)
        model = load_causal_lm(path, device, dtype, what="target", narrow=True)
        draft_obj = draft_tok = None
        if draft is not None and os.path.isfile(os.path.join(draft, "heads.json")):
            draft_obj = load_heads(draft, model, narrow=True)
        elif draft is not None:
            draft_obj = load_causal_lm(draft, model.device, model.dtype, what="draft", narrow=True)
            try:
                draft_tok = load_tokenizer(draft, what="draft")
            except ValueError:
                draft_tok = None  # a draft may ship without a tokenizer; then only the vocabulary size is checked
        return cls(model, load_tokenizer(path, what="target"), draft_obj, method, num_draft_tokens, draft_tok,
                   drafting)

    def drafter(self, method: str, rule: str | None = None, drafting: DraftConfig | None = None):
        """The drafter for a method (one per method, tree rule and drafting options, kept for later calls)."""
        key = (method, rule, drafting or self.drafting)
        if key not in self._drafters:
            if method == "pard" and self.draft is not None and not isinstance(self.draft, DraftHeads):
                pard_token_of(self.draft.config)
            self._drafters[key] = make_drafter(method, self.draft, key[2], rule=rule)
        return self._drafters[key]

    @property
    def eos_token_ids(self) -> set[int]:
        ids = set()
        for src in (self.tokenizer.eos_token_id, getattr(self.target.model.generation_config, "eos_token_id", None)):
            if isinstance(src, int):
                ids.add(src)
            elif src is not None:
                ids.update(src)
        return ids

    def encode(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("the prompt is empty: give some text to continue")
        return self.tokenizer(prompt)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _run(self, prompts: list[str], max_new_tokens=128, temperature=0.0, top_k=0, top_p=1.0, seed=None,
             stop: list[str] | str | None = None, method: str | None = None, num_draft_tokens: int | None = None,
             acceptance: str | None = None, tolerance: int | None = None, drafting: DraftConfig | None = None):
        sampling = Sampling(temperature, top_k, top_p)
        rows = [self.encode(p) for p in prompts]
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(not s for s in stops):
            raise ValueError("a stop string is empty: every stop string needs at least one character")
        generator = None
        if seed is not None:
            generator = torch.Generator(self.target.device).manual_seed(seed)
        k = self.num_draft_tokens if num_draft_tokens is None else num_draft_tokens
        options = tolerance_options(acceptance, tolerance)
        drafter = self.drafter(method or self.method, tree_rule(acceptance, temperature, options), drafting)
        it = stream(self.target, rows, drafter, sampling, max_new_tokens, k, self.eos_token_ids,
                    self._stop_fn(stops) if stops else None, generator, acceptance, options)
        return it, stops

    def _stop_fn(self, stops: list[str]):
        def stop_at(row: int, ids: list[int]) -> int | None:
            if not any(s in self.decode(ids) for s in stops):
                return None
            # the fewest tokens whose text holds a stop string: those are kept, the text is cut before it
            return next(n for n in range(1, len(ids) + 1) if any(s in self.decode(ids[:n]) for s in stops))

        return stop_at

    def _output(self, gen, stops: list[str]) -> TextOutput:
        text = self.decode(gen.token_ids)
        if gen.finish_reason == "stop":
            text = text[: min(text.find(s) for s in stops if s in text)]
        return TextOutput(text, gen.token_ids, gen.stats, gen.finish_reason)

    def generate(self, prompt: str | list[str], **kwargs) -> TextOutput | list[TextOutput]:
        """Generate for one prompt (-> TextOutput) or a batch (-> one TextOutput per prompt, decoded together).

        kwargs: max_new_tokens, temperature (0 = greedy), top_k, top_p, seed, stop (strings), method,
        num_draft_tokens, acceptance (default: greedy at temperature 0, else the lossless sample rule; `typical`
        and `tolerance` are lossy and reported so in the stats), tolerance (k for acceptance="tolerance"),
        drafting (a `DraftConfig` for this call; default: the pipeline's).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("no prompts given: pass a string or a non-empty list of strings")
        it, stops = self._run(prompts, **kwargs)
        outs = [self._output(g, stops) for g in run_to_end(it)]
        return outs[0] if isinstance(prompt, str) else outs

    def stream(self, prompt: str, **kwargs) -> Iterator[str]:
        """Yield text as it is accepted (same kwargs as generate); the full TextOutput is then in `self.last`."""
        it, stops = self._run([prompt], **kwargs)
        ids: list[int] = []
        shown = 0
        while True:
            try:
                _, new = next(it)
            except StopIteration as done:
                self.last = self._output(done.value[0], stops)
                break
            ids.extend(new)
            text = self.decode(ids)
            safe = len(text) - held_back(text, stops)
            if safe > shown:
                yield text[shown:safe]
                shown = safe
        if len(self.last.text) > shown:
            yield self.last.text[shown:]


def held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters not to show yet: a partial UTF-8 character, or the start of a stop string."""
    hold = 1 if text.endswith("\ufffd") else 0
    for s in stops:
        for n in range(min(len(s), len(text)), 0, -1):
            if text.endswith(s[:n]):
                hold = max(hold, n)
                break
    return hold


def check_same_vocabulary(tokenizer, draft_tokenizer, target_vocab: int, draft_model):
    """A draft must share the target's tokenizer: the same token ids for the same pieces (a draft with a trimmed
    vocabulary stores its target tokenizer's fingerprint instead of a tokenizer)."""
    from specgen.cached_lm import vocab_size
    from specgen.vocab_map import VocabMap, tokenizer_fingerprint

    expected = getattr(draft_model.config, "target_tokenizer", None)
    if expected is not None and expected != tokenizer_fingerprint(tokenizer):
        raise ValueError("the draft was trained for another tokenizer (its target_tokenizer fingerprint differs from "
                         "this target's): use a draft trained for this target's tokenizer")
    if VocabMap.of(draft_model.config, vocab_size(draft_model), target_vocab) is not None:
        return  # the map's ids were checked against the target's vocabulary
    dv = vocab_size(draft_model)
    if dv > target_vocab:
        raise ValueError(f"the draft's vocabulary ({dv}) is larger than the target's ({target_vocab}): they do not "
                         f"share a tokenizer; use a draft trained with the target's tokenizer")
    if draft_tokenizer is not None and draft_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError("the draft's tokenizer differs from the target's (other token ids for the same pieces): "
                         "use a draft trained with the target's tokenizer")


__all__ = ["TextOutput", "TextPipeline", "METHODS"]
