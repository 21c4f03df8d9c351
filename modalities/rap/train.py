"""Build the rap LM's training sequences from the RapBank (`modalities.rap.data`); the LM, its heads and the
flow-matching decoder then train with the shared recipes:

    python -m modalities.rap.train --data data/rap --out models/zoo/rap --tokenizer models/zoo/rap/tokenizer \\
        [--aligned]    (each lyric word's phonemes in the stream just before its onset frame)
    specgen train-lm --preset text-12m --vocab V --train data/rap/train.pt --heldout data/rap/heldout.pt \\
        --out runs/rap-lm --context 2048 --seq 2048          (V is printed here)
    specgen train-heads --target models/zoo/rap/lm --kind medusa --data data/rap/train.pt --out models/zoo/rap/heads
    (the flow decoder, speech tokenizer and vocoder are the speech model's: the rap folder's shared.json points at
    them in models/zoo/speech-tts, or copy them in)
"""
from __future__ import annotations

import argparse
import json
import os
import random

import torch

from modalities.audio.features import load_audio
from modalities.audio.tokenizer import SpeechTokenizer
from modalities.specials import EOS
from specgen.loading import part_path

from .accompaniment import accompaniment_tokens
from .vocab import LINE, RapVocab

PROMPT_FRAMES = 150  # 3 s at 50 frames per second


def songs(data: str, split: str) -> list[dict]:
    path = os.path.join(data, f"{split}.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} is missing: build the RapBank first (python -m modalities.rap.data)")
    return [json.loads(ln) for ln in open(path, encoding="utf-8")]


def vocal_tokens(song: dict, tok: SpeechTokenizer) -> list[int]:
    return tok.encode(torch.from_numpy(load_audio(song["vocals"], tok.cfg.sample_rate))).tolist()


def build(data: str, out: str, tokenizer: str, seed: int = 0, aligned: bool = False):
    tok = SpeechTokenizer.load(tokenizer)
    rng = random.Random(seed)
    split_songs = {s: songs(data, s) for s in ("train", "heldout")}
    vocab = RapVocab.from_texts([p for s in split_songs["train"] for p in s["phonemes"]], tok.size, aligned)
    for split, items in split_songs.items():
        vocals = {s["id"]: vocal_tokens(s, tok) for s in items}
        by_voice: dict[str, list[dict]] = {}
        for s in items:
            by_voice.setdefault(s["voice"], []).append(s)
        seqs = []
        for s in items:
            other = rng.choice([o for o in by_voice[s["voice"]] if o["id"] != s["id"]] or [s])
            start = int(other["onsets"][0] * tok.cfg.frames_per_second)  # the prompt starts where the voice does
            prompt = vocals[other["id"]][start : start + PROMPT_FRAMES]
            acc, _, _ = accompaniment_tokens(load_audio(s["beat"], tok.cfg.sample_rate), tok.cfg.sample_rate)
            prefix = vocab.prefix(LINE.join(s["phonemes"]), acc, prompt)
            body = vocab.speech_ids(vocals[s["id"]])
            if aligned:  # each word's phonemes just before the frame of its onset
                fps = tok.cfg.frames_per_second
                body = vocab.interleave(body, vocab.word_ids(s["lyrics"]), [round(t * fps) for t in s["onsets"]])
            seqs.append({"ids": prefix + body + [EOS], "loss_from": len(prefix), "id": s["id"]})
        torch.save(seqs, os.path.join(data, f"{split}.pt"))
        print(f"{split}: {len(seqs)} sequences, longest {max(len(x['ids']) for x in seqs)} tokens")
    vocab.save(os.path.join(out, "lm"))
    print(f"vocabulary: {len(vocab)} ids")


def write_prompt(data: str, out: str):
    """The model's default voice prompt: 3 s of the first held-out song's vocals, from where the voice starts."""
    from modalities.audio.features import save_audio

    song = songs(data, "heldout")[0]
    sr = SpeechTokenizer.load(part_path(out, "tokenizer")).cfg.sample_rate
    start = int(song["onsets"][0] * sr)
    audio = load_audio(song["vocals"], sr)[start : start + PROMPT_FRAMES * sr // 50]
    save_audio(os.path.join(out, "prompt.wav"), audio, sr)
    print(f"prompt.wav: {len(audio) / sr:.1f} s of {song['id']} ({song['voice']})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/rap")
    ap.add_argument("--out", default="models/zoo/rap")
    ap.add_argument("--tokenizer", default="models/zoo/speech-tts/tokenizer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt-only", action="store_true", help="only write the default voice prompt (prompt.wav)")
    ap.add_argument("--aligned", action="store_true",
                    help="put each lyric word's phonemes in the stream just before its onset frame")
    a = ap.parse_args(argv)
    if a.prompt_only:
        write_prompt(a.data, a.out)
    else:
        build(a.data, a.out, a.tokenizer, a.seed, a.aligned)


if __name__ == "__main__":
    main()
