"""Training data for a draft of a large-vocabulary target (Gemma 3 270M by default), built from the text corpus:

    python -m modalities.text.distill encode   --target gemma-3-270m --corpus data/text --out data/gemma
    python -m modalities.text.distill generate --target gemma-3-270m --corpus data/text --out data/gemma --minutes 40
    python -m modalities.text.distill vocab    --out data/gemma --size 24576   (or --from-draft FOLDER)
    python -m modalities.text.distill export   --out data/gemma
    python -m modalities.text.distill init     --out data/gemma --dest runs/gemma-pard-init

`encode` writes the corpus in the target's token ids (uint32, documents separated by EOS); `generate` writes the
target's own continuations of corpus windows (two thirds greedy, a third sampled at temperature 1; resumable,
appended batch by batch); `vocab` keeps the most frequent target tokens as the draft's output vocabulary (the
draft-to-target map, EAGLE-3 style); `export` rewrites every stream in draft ids (uint16 files for `TokenMix`).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

SPLITS = ("train", "heldout")
DOMAINS = ("code", "prose")


def load_docs(corpus: str, split: str):
    path = os.path.join(corpus, f"{split}.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} is missing: build the corpus first (python -m modalities.text.corpus --out {corpus})")
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def encode(target: str, corpus: str, out: str):
    """The corpus in target ids: <out>/<split>.<domain>.u32, documents separated by the target's EOS."""
    from specgen.loading import load_tokenizer

    from .gemma import resolve_model

    tok = load_tokenizer(resolve_model(target), what="target")
    os.makedirs(out, exist_ok=True)
    for split in SPLITS:
        streams = {d: [] for d in DOMAINS}
        for doc in load_docs(corpus, split):
            ids = tok(doc["text"], add_special_tokens=False)["input_ids"]
            streams[doc["domain"]].append(np.asarray(ids + [tok.eos_token_id], dtype=np.uint32))
        for d, parts in streams.items():
            arr = np.concatenate(parts)
            arr.tofile(os.path.join(out, f"{split}.{d}.u32"))
            print(f"{split}.{d}: {len(arr) / 1e6:.2f} M tokens", flush=True)


def prompt_windows(docs: list[dict], tok, count: int, rng: np.random.Generator):
    """Prompts cut from training documents: code starts at a `def`/`class` line half the time (the shape of a
    function-completion prompt), else at a random line; 16-96 tokens."""
    out = []
    while len(out) < count:
        doc = docs[rng.integers(len(docs))]
        lines = doc["text"].splitlines(keepends=True)
        if len(lines) < 4:
            continue
        starts = [i for i, ln in enumerate(lines) if ln.lstrip().startswith(("def ", "class "))]
        i = int(rng.choice(starts)) if starts and doc["domain"] == "code" and rng.random() < 0.5 else \
            int(rng.integers(len(lines) - 2))
        ids = tok("".join(lines[i:i + 40]), add_special_tokens=False)["input_ids"]
        n = int(rng.integers(16, 97))
        if len(ids) >= n:
            out.append((doc["domain"], [tok.bos_token_id] + ids[:n]))
    return out


def generate(target: str, corpus: str, out: str, minutes: float, batch: int = 32, new_tokens: int = 160,
             seed: int = 0, dtype: str = "bfloat16"):
    """Append batches of the target's continuations to <out>/generated.<domain>.u32 (prompt + continuation + EOS)
    until `minutes` pass; a rerun goes on from the number of batches done (progress in generated.json)."""
    import torch

    from specgen.loading import load_causal_lm, load_tokenizer

    from .gemma import resolve_model

    path = resolve_model(target)
    tok = load_tokenizer(path, what="target")
    model = load_causal_lm(path, dtype=dtype, what="target")
    os.makedirs(out, exist_ok=True)
    state_path = os.path.join(out, "generated.json")
    state = json.load(open(state_path)) if os.path.isfile(state_path) else {"batches": 0, "tokens": 0, "seconds": 0}
    docs = list(load_docs(corpus, "train"))
    before, t0 = state["seconds"], time.time()
    while time.time() - t0 < minutes * 60:
        b = state["batches"]
        rng = np.random.default_rng([seed, b])
        prompts = prompt_windows(docs, tok, batch, rng)
        width = max(len(p) for _, p in prompts)
        ids = torch.full((batch, width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros(batch, width, dtype=torch.long)
        for r, (_, p) in enumerate(prompts):
            ids[r, width - len(p):] = torch.tensor(p)
            mask[r, width - len(p):] = 1
        sampled = b % 3 == 2
        torch.manual_seed(seed * 100003 + b)
        with torch.inference_mode():
            gen = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 max_new_tokens=new_tokens, do_sample=sampled, temperature=1.0 if sampled else None,
                                 top_k=0 if sampled else None, top_p=1.0 if sampled else None,
                                 pad_token_id=tok.pad_token_id)[:, width:].cpu()
        files = {d: open(os.path.join(out, f"generated.{d}.u32"), "ab") for d in DOMAINS}
        for r, (domain, p) in enumerate(prompts):
            cont = gen[r].tolist()
            if tok.eos_token_id in cont:
                cont = cont[: cont.index(tok.eos_token_id)]
            seq = p[1:] + cont + [tok.eos_token_id]
            files[domain].write(np.asarray(seq, dtype=np.uint32).tobytes())
            state["tokens"] += len(cont)
        for f in files.values():
            f.close()
        state["batches"] = b + 1
        state["seconds"] = before + time.time() - t0
        with open(state_path + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(state_path + ".tmp", state_path)
        print(f"batch {b + 1}: {state['tokens']} generated tokens, {time.time() - t0:.0f} s", flush=True)


def streams(out: str, split: str) -> dict[str, np.ndarray]:
    names = [f"{split}.{d}" for d in DOMAINS] + ([f"generated.{d}" for d in DOMAINS] if split == "train" else [])
    return {n: np.fromfile(os.path.join(out, f"{n}.u32"), dtype=np.uint32) for n in names
            if os.path.isfile(os.path.join(out, f"{n}.u32"))}


def vocab(out: str, size: int, target: str, from_draft: str | None = None):
    """The draft's output vocabulary: the target's BOS, EOS and padding ids and the `size` - 3 most frequent target
    tokens in the training streams (generated text counted three times: it is what the draft must predict); the
    draft adds an unknown id and the PARD mask id. `from_draft`: take the map of an existing trimmed draft instead
    (the shipped one), so that streams exported on a new machine match its ids."""
    from specgen.loading import load_tokenizer

    from .gemma import resolve_model

    tok = load_tokenizer(resolve_model(target), what="target")
    target_vocab = len(tok)
    counts = np.zeros(target_vocab, dtype=np.int64)
    for name, arr in streams(out, "train").items():
        counts += np.bincount(arr, minlength=target_vocab) * (3 if name.startswith("generated") else 1)
    specials = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id} - {None}
    counts[list(specials)] = counts.max() + 1
    if from_draft:
        cfg_path = os.path.join(from_draft, "config.json")
        if not os.path.isfile(cfg_path):
            raise SystemExit(f"{cfg_path} is missing: --from-draft takes a trimmed draft's folder")
        cfg = json.load(open(cfg_path))
        if "draft_to_target" not in cfg:
            raise SystemExit(f"{from_draft} has no draft_to_target map: it is not a trimmed-vocabulary draft")
        d2t = [int(t) for t in cfg["draft_to_target"]]
        if max(d2t) >= target_vocab:
            raise SystemExit(f"{from_draft} maps to ids up to {max(d2t)}, beyond {target}'s {target_vocab} tokens")
        size = len(d2t)
    else:
        d2t = sorted(int(t) for t in np.argsort(-counts, kind="stable")[:size])
    covered = counts[d2t].sum() / counts.sum()
    info = {"draft_to_target": d2t, "unk": size, "mask": size + 1, "coverage": float(covered),
            "target_vocab": target_vocab}
    with open(os.path.join(out, "vocab.json"), "w") as f:
        json.dump(info, f)
    held = np.concatenate(list(streams(out, "heldout").values()))
    print(f"{size} tokens cover {covered:.4f} of training tokens, {np.isin(held, d2t).mean():.4f} of held-out")


def export(out: str):
    """Every stream in draft ids (uint16, unknown tokens as `unk`): <out>/draft/<name>.bin."""
    info = json.load(open(os.path.join(out, "vocab.json")))
    t2d = np.full(info["target_vocab"], info["unk"], dtype=np.uint16)
    t2d[info["draft_to_target"]] = np.arange(len(info["draft_to_target"]), dtype=np.uint16)
    os.makedirs(os.path.join(out, "draft"), exist_ok=True)
    for split in SPLITS:
        for name, arr in streams(out, split).items():
            t2d[arr].tofile(os.path.join(out, "draft", f"{name}.bin"))
            print(f"{name}: {len(arr) / 1e6:.2f} M tokens", flush=True)


def init_draft(out: str, target: str, dest: str, hidden: int = 320, layers: int = 4, heads: int = 5,
               intermediate: int = 864, context: int = 8192, seed: int = 0):
    """A fresh Llama-format draft over the trimmed vocabulary (`vocab.json`), ready for PARD training: its config
    carries the draft-to-target map, the unknown and mask ids and the target tokenizer's fingerprint; its (tied)
    embeddings start as the target's embeddings of the same tokens, reduced to `hidden` dimensions by PCA."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from specgen.loading import load_causal_lm, load_tokenizer
    from specgen.vocab_map import tokenizer_fingerprint

    from .gemma import resolve_model

    info = json.load(open(os.path.join(out, "vocab.json")))
    d2t = info["draft_to_target"]
    path = resolve_model(target)
    tok = load_tokenizer(path, what="target")
    target_lm = load_causal_lm(path, dtype="float32", what="target")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(d2t) + 2, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=intermediate,
                      max_position_embeddings=context, tie_word_embeddings=True, rope_theta=10000.0,
                      bos_token_id=int(np.searchsorted(d2t, tok.bos_token_id)),
                      eos_token_id=int(np.searchsorted(d2t, tok.eos_token_id)), pad_token_id=None)
    assert d2t[cfg.bos_token_id] == tok.bos_token_id and d2t[cfg.eos_token_id] == tok.eos_token_id
    cfg.draft_to_target, cfg.draft_unk_token, cfg.pard_token = d2t, info["unk"], info["mask"]
    cfg.target_tokenizer = tokenizer_fingerprint(tok)
    model = LlamaForCausalLM(cfg)
    emb = target_lm.get_input_embeddings().weight.detach()[torch.tensor(d2t)].float()  # [kept, target dim]
    emb = emb - emb.mean(0)
    _, _, v = torch.linalg.svd(emb, full_matrices=False)
    low = emb @ v[:hidden].T  # [kept, hidden]
    with torch.no_grad():
        model.get_input_embeddings().weight[: len(d2t)] = low * (0.02 / low.std())
    model.save_pretrained(dest, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(f"{dest}: {n / 1e6:.1f}M parameters, vocabulary {cfg.vocab_size}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["encode", "generate", "vocab", "export", "init"])
    ap.add_argument("--dest", default="runs/gemma-pard-init", help="init: the draft folder to write")
    ap.add_argument("--target", default="gemma-3-270m")
    ap.add_argument("--corpus", default="data/text")
    ap.add_argument("--out", default="data/gemma")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=160)
    ap.add_argument("--size", type=int, default=24576)
    ap.add_argument("--from-draft", help="vocab: reuse this trimmed draft's map (e.g. models/zoo/text-gemma-pard)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.step == "encode":
        encode(a.target, a.corpus, a.out)
    elif a.step == "generate":
        generate(a.target, a.corpus, a.out, a.minutes, a.batch, a.new_tokens, a.seed)
    elif a.step == "vocab":
        vocab(a.out, a.size, a.target, a.from_draft)
    elif a.step == "export":
        export(a.out)
    else:
        init_draft(a.out, a.target, a.dest, seed=a.seed)


if __name__ == "__main__":
    main()
