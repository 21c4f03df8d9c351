"""`specgen bench speech`: `ar` sampling against VADUSA at several tolerances, on held-out sentences spoken by
held-out voices. Per row: real-time factor, token-stage speedup over `ar`, the end-to-end speedup (whole `generate`
calls: tokens, flow and vocoder), mean accepted length, the word error rate of what Whisper base hears (`--no-wer`
skips it), mel-cepstral distortion (DTW) against the reference recording of the same sentence and voice, and the
cepstral speaker similarity to the voice prompt. Example WAVs of the first sentence are written beside the table.
Griffin-Lim (and the model's neural vocoder, when it ships one) rebuild each reference recording from its own
log-mel (copy synthesis), scored by MCD, WER and multi-resolution log-spectral distance; with a neural vocoder
`ar` is also run through Griffin-Lim."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from modalities.audio.features import load_audio, save_audio
from modalities.audio.flow import resynthesize
from modalities.audio.metrics import log_spectral_distance, mel_cepstral_distortion, speaker_similarity
from modalities.bench import (add_pytorch_drafting, file_label, head_variants, settings, warm_up, with_drafting,
                              words_judge, write_outputs)

COLUMNS = [("method", "method", str), ("rtf", "real-time factor", lambda v: f"{v:.2f}"),
           ("speedup", "token-stage speedup vs ar", lambda v: f"{v:.2f}x"),
           ("e2e", "end-to-end speedup vs ar", lambda v: f"{v:.2f}x"),
           ("wer", "WER (Whisper base)", lambda v: f"{v:.1%}"),
           ("mean_accepted", "mean accepted", lambda v: f"{v:.2f}"), ("mcd", "MCD dB (lower better)",
                                                                      lambda v: f"{v:.2f}"),
           ("speaker_sim", "speaker similarity", lambda v: f"{v:.3f}"), ("lossless", "lossless", str),
           ("lsd", "log-spectral distance dB (copy synthesis)", lambda v: f"{v:.2f}")]


def cases(data: str, count: int, split: str = "heldout") -> list[tuple[dict, dict]]:
    """(clip to re-speak, prompt clip by the same voice) pairs from the held-out split (or the training split, for
    choosing settings without touching the held-out sentences)."""
    path = os.path.join(data, f"{split}.jsonl")
    if not os.path.isfile(path):
        raise ValueError(f"{path} is missing: build the speech set first (python -m modalities.speech.data)")
    clips = [json.loads(ln) for ln in open(path, encoding="utf-8")]
    by_voice: dict[str, list[dict]] = {}
    for c in clips:
        by_voice.setdefault(c["voice"], []).append(c)
    out = []
    for c in clips:
        others = [o for o in by_voice[c["voice"]] if o["id"] != c["id"]]
        if others:
            out.append((c, others[0]))
        if len(out) == count:
            break
    return out


def copy_synthesis(tts, reference: np.ndarray) -> dict[str, np.ndarray]:
    """The reference rebuilt from its own log-mel by Griffin-Lim and, when the model ships one, by its neural
    vocoder: the vocoders compared with no tokenizer, LM or flow in between."""
    import torch

    from modalities.audio.features import griffin_lim, log_mel

    mel = log_mel(torch.from_numpy(reference), tts.tokenizer.cfg)
    out = {"Griffin-Lim": griffin_lim(mel, tts.tokenizer.cfg).numpy()}
    if tts.vocoder is not None:
        out["neural vocoder"] = tts.vocoder.vocode(mel).numpy()
    return out


def bench(args) -> str:
    from .pipeline import SpeechPipeline

    tts = SpeechPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    if args.temperature is None:  # the model's own
        args.temperature = tts.vocab.temperature if tts.vocab.temperature is not None else 1.0
    variants = [(kind, pipe) for kind, pipe in head_variants(tts, args.heads) if pipe.heads is not None]
    methods = [("ar", tts, dict(method="ar"))]  # (a model without heads gets the ar rows alone)
    if tts.vocoder is not None:  # the same tokens as ar through the baseline vocoder
        methods.append(("ar, Griffin-Lim", tts, dict(method="ar", vocoder="griffin-lim")))
    net = tts.flow is None and tts.mel_decoder is not None  # the same tokens as ar through the centroids alone
    if net:
        methods.append(("ar, centroids", tts, dict(method="ar", decoder="centroids")))
    methods += [
        (f"vadusa k={k}" + (f" ({kind})" if len(variants) > 1 else ""), pipe, dict(method="vadusa", tolerance=k))
        for kind, pipe in variants for k in args.tolerances]
    if args.temperature > 0 and args.exact:  # the heads under the lossless rule: guesses drawn, and their top-k
        methods += [(f"heads, exact{label}" + (f" ({kind})" if len(variants) > 1 else ""), pipe,
                     dict(method="vadusa", acceptance="sample", draws=draws))
                    for kind, pipe in variants for label, draws in ((", drawn guesses", "auto"),
                                                                     (", top-k guesses", "top"))]
    if args.pytorch_drafting:  # Hydra++ heads' rows again, drafting in eager PyTorch instead of specgen's kernel
        methods += [(f"{name}, PyTorch rounds", pipe, {**kw, "backend": "eager"}) for name, pipe, kw in methods
                    if kw["method"] == "vadusa" and pipe.heads.kind == "hydra"]
    tally = {name: {"wall": 0.0, "audio": 0.0, "tokens": 0, "token_s": 0.0, "acc": [], "mcd": [], "sim": [],
                    "lossless": True, "audios": []} for name, _, _ in methods}
    ceiling = {"sim": [], "mcd": [], "resynth_sim": [], "references": [], "resynth": []}
    copies: dict[str, dict[str, list]] = {}
    os.makedirs(args.out, exist_ok=True)
    pairs = cases(args.data, args.sentences, args.split)
    warm_up(lambda pipe, kw: pipe.generate(pairs[0][0]["text"], voice_prompt=pairs[0][1]["path"], max_seconds=0.5,
                                           temperature=args.temperature, **with_drafting(kw)),
            [(pipe, kw) for _, pipe, kw in methods])
    for i, (clip, prompt) in enumerate(pairs):
        reference = load_audio(clip["path"], tts.sample_rate)
        prompt_audio = load_audio(prompt["path"], tts.sample_rate)
        for name, pipe, kw in methods:
            res = pipe.generate(clip["text"], voice_prompt=prompt["path"], temperature=args.temperature,
                               top_k=args.top_k, seed=args.seed + i, max_seconds=args.max_seconds,
                               **with_drafting({"tree_size": args.tree_size, **kw}))
            t = tally[name]
            t["wall"] += res.seconds_total
            t["audio"] += len(res.audio) / res.sample_rate
            t["tokens"] += res.stats.new_tokens
            t["token_s"] += res.stats.wall_s
            t["acc"].append(res.stats.mean_accepted)
            t["mcd"].append(mel_cepstral_distortion(res.audio, reference))
            t["sim"].append(speaker_similarity(res.audio, prompt_audio))
            t["lossless"] &= res.stats.lossless
            t["audios"].append(res.audio)
            if i == 0:
                save_audio(os.path.join(args.out, f"speech-{file_label(name)}.wav"),
                           res.audio, res.sample_rate)
        ceiling["sim"].append(speaker_similarity(reference, prompt_audio))
        resynth = resynthesize(tts, reference, prompt_audio, args.seed + i)
        ceiling["references"].append(reference)
        ceiling["resynth"].append(resynth)
        ceiling["mcd"].append(mel_cepstral_distortion(resynth, reference))
        ceiling["resynth_sim"].append(speaker_similarity(resynth, prompt_audio))
        if net:
            ceiling.setdefault("centroids", []).append(resynthesize(tts, reference, prompt_audio, 0, net=False))
        for name, audio in copy_synthesis(tts, reference).items():
            c = copies.setdefault(name, {"mcd": [], "lsd": [], "audios": []})
            c["audios"].append(audio)
            c["mcd"].append(mel_cepstral_distortion(audio, reference))
            c["lsd"].append(log_spectral_distance(audio, reference))
        print(f"sentence {i + 1}/{len(pairs)} done", flush=True)
    ar_rate = tally["ar"]["tokens"] / tally["ar"]["token_s"]
    ar_rtf = tally["ar"]["wall"] / tally["ar"]["audio"]
    texts = [clip["text"] for clip, _ in pairs]
    wer = words_judge(args.wer, texts, tts.sample_rate)
    rows = [{"group": "speech", "method": name, "rtf": t["wall"] / t["audio"],
             "speedup": (t["tokens"] / t["token_s"]) / ar_rate, "e2e": ar_rtf / (t["wall"] / t["audio"]),
             "mean_accepted": float(np.mean(t["acc"])), **wer(t["audios"]),
             "mcd": float(np.mean(t["mcd"])), "speaker_sim": float(np.mean(t["sim"])),
             "lossless": "yes" if t["lossless"] else "no"} for name, t in tally.items()]
    rows += [{"group": "speech", "method": "reference recording", "speaker_sim": float(np.mean(ceiling["sim"])),
              **wer(ceiling["references"])},
             {"group": "speech", "method": "reference tokens, resynthesized", "mcd": float(np.mean(ceiling["mcd"])),
              "speaker_sim": float(np.mean(ceiling["resynth_sim"])), **wer(ceiling["resynth"])}]
    if net:
        rows.append({"group": "speech", "method": "reference tokens, centroids", **wer(ceiling["centroids"])})
    rows += [{"group": "speech", "method": f"reference mel, {name}", "mcd": float(np.mean(c["mcd"])),
              "lsd": float(np.mean(c["lsd"])), **wer(c["audios"])} for name, c in copies.items()]
    md = write_outputs(args.out, "speech", rows, settings(args),
                       "speech token stage: speedup over ar", COLUMNS)
    print(md)
    return md


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--model", default="models/zoo/speech-tts")
    p.add_argument("--data", default="data/speech")
    p.add_argument("--sentences", type=int, default=12)
    p.add_argument("--split", default="heldout", choices=["heldout", "train"],
                   help="train: training sentences, for choosing settings (the held-out ones stay unseen)")
    p.add_argument("--tolerances", type=int, nargs="*", default=[1, 3, 5], help="VADUSA rows (none: ar only)")
    p.add_argument("--exact", action=argparse.BooleanOptionalAction, default=True,
                   help="also decode the heads with the lossless sampling rule (drawn and top-k guesses)")
    p.add_argument("--temperature", type=float, help="default: the model's own (speech_vocab.json), else 1")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=12.0)
    p.add_argument("--tree-size", type=int, help="candidate nodes per round (default: by device)")
    add_pytorch_drafting(p, "every Hydra++ heads row")
    p.add_argument("--heads", nargs="*", help="other heads folders trained on this LM, compared in the same run")
    p.add_argument("--wer", action=argparse.BooleanOptionalAction, default=True,
                   help="score every row's words with Whisper base (faster-whisper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--out", default="bench_out")
