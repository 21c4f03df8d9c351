"""`specgen bench rap`: on held-out songs, the token stage decoded with `ar` and with draft heads: token-stage
speedup and mean accepted length, end-to-end real-time factor, beat alignment (share of vocal word onsets
within 50 ms of an eighth note) for the reference vocals and each method, the word onsets found per song (with
few onsets, alignment is a noisy share), mel-cepstral distortion against the reference vocals, and cepstral
speaker similarity to the prompt, and the word error rate of what Whisper base hears in the vocals stem against the
lyrics, and the share of lyric words Whisper hears starting within an eighth note of their beat slot (`--no-wer`
skips both). Two example mixes are written beside it."""
from __future__ import annotations

import argparse
import os

import numpy as np

from modalities.audio.features import load_audio, save_audio
from modalities.audio.flow import resynthesize
from modalities.audio.metrics import mel_cepstral_distortion, speaker_similarity
from modalities.bench import (add_phases, add_setting_sweeps, file_label, head_variants, round_ms, settings, sweep_rows,
                              warm_up, with_drafting, write_outputs)

from .beats import beat_alignment, word_onsets
from .train import songs

COLUMNS = [("method", "method", str), ("speedup", "token-stage speedup vs ar", lambda v: f"{v:.2f}x"),
           ("mean_accepted", "mean accepted", lambda v: f"{v:.2f}"), ("rtf", "real-time factor",
                                                                       lambda v: f"{v:.2f}"),
           ("wer", "WER (Whisper base)", lambda v: f"{v:.1%}"),
           ("on_slot", "words on their slot", lambda v: f"{v:.1%}"),
           ("alignment", "beat alignment", lambda v: f"{v:.1%}"),
           ("onsets", "word onsets per song", lambda v: f"{v:.1f}"), ("mcd", "MCD dB", lambda v: f"{v:.2f}"),
           ("speaker_sim", "speaker similarity", lambda v: f"{v:.3f}"), ("lossless", "lossless", str)]


def words_on_beat(enabled: bool, items: list[dict], sample_rate: int):
    """vocals (one per song in `items`) -> {"wer": against the lyrics, "on_slot": the mean share of lyric words
    heard whose start (an energy onset in the stem, `word_onsets`) lies within an eighth note of their slot} ({} when
    disabled; no on_slot when a song lacks its slots)."""
    if not enabled:
        return lambda audios: {}
    from modalities.audio.recognizer import Recognizer, on_slot, word_error_rate

    rec = Recognizer()
    lyrics = [" ".join(s["lyrics"]) for s in items]

    def judge(audios):
        heard = [rec.words(a, sample_rate) for a in audios]
        out = {"wer": word_error_rate(lyrics, [" ".join(w for w, _ in h) for h in heard])}
        if all("bpm" in s and len(s["onsets"]) == len(t.split()) for s, t in zip(items, lyrics)):
            out["on_slot"] = float(np.mean([on_slot(t.split(), s["onsets"], h, 30.0 / s["bpm"],
                                                    list(word_onsets(a, sample_rate)))
                                            for s, t, h, a in zip(items, lyrics, heard, audios)]))
        return out

    return judge


def score(t: dict, vocals: np.ndarray, grid: np.ndarray, ref: np.ndarray):
    """Adds one song's vocals to the tally `t`: beat alignment, onsets found, MCD against the reference, the audio."""
    onsets = word_onsets(vocals)
    t["align"].append(beat_alignment(onsets, grid))
    t["onsets"].append(len(onsets))
    t["mcd"].append(mel_cepstral_distortion(vocals, ref))
    t["vocals"].append(vocals)


def bench(args) -> str:
    from .pipeline import RapPipeline

    rap = RapPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    items = songs(args.data, args.split)[: args.songs]
    by_voice: dict[str, list[dict]] = {}
    for s in songs(args.data, args.split):
        by_voice.setdefault(s["voice"], []).append(s)
    variants = head_variants(rap, args.heads)
    methods = {"ar": (rap, dict(method="ar"))}
    if rap.vocoder is not None:  # the same tokens as ar through the baseline vocoder
        methods["ar, Griffin-Lim"] = (rap, dict(method="ar", vocoder="griffin-lim"))
    for kind, pipe in variants:
        label = "heads" + (f" ({kind})" if len(variants) > 1 else "")
        methods[label] = (pipe, dict(method="heads"))
        if args.temperature > 0:  # the heads' guesses drawn (the default) against their top-k
            methods[f"{label}, top-k guesses"] = (pipe, dict(method="heads", draws="top"))
        methods.update({f"{label} k={k}": (pipe, dict(method="heads", tolerance=k)) for k in args.tolerances})
        methods.update({name: (pipe, kw) for name, kw in sweep_rows(label, dict(method="heads"), args).items()})
    tally = {m: {"tokens": 0, "token_s": 0.0, "wall": 0.0, "audio": 0.0, "acc": [], "align": [], "onsets": [],
                 "mcd": [], "sim": [], "vocals": [], "lossless": True} for m in methods}
    reference_alignment, reference_onsets, references = [], [], []
    resynth = {"align": [], "onsets": [], "mcd": [], "vocals": []}  # the reference's own tokens, decoded
    os.makedirs(args.out, exist_ok=True)

    def prompt_of(s):
        return next((o for o in by_voice[s["voice"]] if o["id"] != s["id"]), s)["vocals"]

    first = items[0]  # its first line, once per method
    warm_up(lambda pipe, kw: pipe.generate(first["lyrics"][0], first["beat"], voice_prompt=prompt_of(first),
                                           temperature=args.temperature, seed=args.seed, **with_drafting(kw)),
            methods.values())
    for i, s in enumerate(items):
        prompt = prompt_of(s)
        ref, prompt_audio = load_audio(s["vocals"], rap.sample_rate), load_audio(prompt, rap.sample_rate)
        grid = np.array(s["beat_times"])
        onsets = word_onsets(ref)
        reference_alignment.append(beat_alignment(onsets, grid))
        reference_onsets.append(len(onsets))
        references.append(ref)
        score(resynth, resynthesize(rap, ref, prompt_audio, args.seed + i), grid, ref)
        for name, (pipe, kw) in methods.items():
            res = pipe.generate("\n".join(s["lyrics"]), s["beat"], voice_prompt=prompt, temperature=args.temperature,
                               seed=args.seed + i, **with_drafting(kw))
            t = tally[name]
            t["tokens"] += res.stats.new_tokens
            t["token_s"] += res.stats.wall_s
            t["wall"] += res.seconds_total
            t["audio"] += len(res.mix) / res.sample_rate
            t["acc"].append(res.stats.mean_accepted)
            t["lossless"] &= res.stats.lossless
            add_phases(t, res.stats)
            score(t, res.vocals, grid, ref)
            t["sim"].append(speaker_similarity(res.vocals, prompt_audio))
            if i < 2:
                save_audio(os.path.join(args.out, f"rap-{i}-{file_label(name)}.wav"), res.mix, res.sample_rate)
        print(f"song {i + 1}/{len(items)} done", flush=True)
    ar_rate = tally["ar"]["tokens"] / tally["ar"]["token_s"]
    wer = words_on_beat(args.wer, items, rap.sample_rate)
    rows = [{"group": "rap", "method": "reference vocals", "alignment": float(np.mean(reference_alignment)),
             "alignment_per_song": reference_alignment, "onsets": float(np.mean(reference_onsets)),
             **wer(references)},
            {"group": "rap", "method": "reference tokens, resynthesized", "alignment": float(np.mean(resynth["align"])),
             "alignment_per_song": resynth["align"], "onsets": float(np.mean(resynth["onsets"])),
             "mcd": float(np.mean(resynth["mcd"])), **wer(resynth["vocals"])}]
    rows += [{"group": "rap", "method": m, "speedup": t["tokens"] / t["token_s"] / ar_rate,
              "mean_accepted": float(np.mean(t["acc"])), "rtf": t["wall"] / t["audio"], **wer(t["vocals"]),
              "alignment": float(np.mean(t["align"])), "alignment_per_song": t["align"],
              "onsets": float(np.mean(t["onsets"])),
              "mcd": float(np.mean(t["mcd"])),
              "speaker_sim": float(np.mean(t["sim"])), "lossless": "yes" if t["lossless"] else "no",
              "round_ms": round_ms(t)}
             for m, t in tally.items()]
    md = write_outputs(args.out, "rap", rows, settings(args),
                       "rap token stage", COLUMNS)
    print(md)
    return md


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--model", default="models/zoo/rap")
    p.add_argument("--data", default="data/rap")
    p.add_argument("--songs", type=int, default=8)
    add_setting_sweeps(p, "songs", "the heads")
    p.add_argument("--tolerances", type=int, nargs="*", default=[],
                   help="also decode the heads with VADUSA tolerance acceptance at these k (lossy)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--heads", nargs="*", help="other heads folders trained on this LM, compared in the same run")
    p.add_argument("--wer", action=argparse.BooleanOptionalAction, default=True,
                   help="score the vocals' words against the lyrics, and their timing against the beat slots, with "
                        "Whisper base (faster-whisper)")
    p.add_argument("--out", default="bench_out")
