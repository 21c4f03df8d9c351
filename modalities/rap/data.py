"""A small RapBank of our own: rhyming four-line verses built from the prose corpus, drum beats between 80 and
110 BPM, and vocals in several espeak-ng voices placed so that every word starts on an eighth note of the beat.
Each song has stems (vocals, beat), the mix, its lyrics and phonemes, tempo, voice and word onsets. Held-out
songs use held-out lyrics; held-out voices are never used for training. Deterministic from a seed.

    python -m modalities.rap.data --corpus data/text --out data/rap --train 400 --heldout 24
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import numpy as np

from modalities.batch import resume_records
from modalities.audio.features import save_audio
from modalities.audio.espeak import ESPEAK_HELDOUT, ESPEAK_TRAIN, phonemes, speak

from .beats import SR, beat
from .vocab import word_slots


def rhyme_key(word: str) -> str | None:
    """The phonemes from the last stressed vowel on ('day' and 'away' share one); None if espeak finds none."""
    ipa = phonemes(word).split(" ")[-1]
    at = max(ipa.rfind("ˈ"), ipa.rfind("ˌ"))
    tail = re.sub("[ˈˌ]", "", ipa[at + 1 :] if at >= 0 else ipa)
    return tail if len(tail) >= 2 else None


def word_pool(corpus: str, split: str, seed: int, size: int = 400) -> tuple[list[list[str]], dict[str, list[str]]]:
    """Short word runs (line openings) and rhyme groups of common words, from the corpus's prose."""
    from modalities.documents import read_docs

    docs = [re.findall(r"[a-z]+", d["text"].lower()) for d in read_docs(os.path.join(corpus, f"{split}.jsonl"),
                                                                           "prose")]
    counts: dict[str, int] = {}
    for words in docs:
        for w in words:
            counts[w] = counts.get(w, 0) + 1
    familiar = set(sorted(counts, key=lambda w: (-counts[w], w))[:3000])  # drops abbreviations and oddities
    runs = [words[i : i + 4] for words in docs for i in range(0, len(words) - 4, 7)
            if all(w in familiar and (len(w) > 1 or w in ("a", "i")) for w in words[i : i + 4])]
    rng = random.Random(seed)
    rng.shuffle(runs)
    common = [w for w in sorted(counts, key=lambda w: (-counts[w], w)) if 3 <= len(w) <= 7][:size]
    groups: dict[str, list[str]] = {}
    for w in common:
        key = rhyme_key(w)
        if key:
            groups.setdefault(key, []).append(w)
    return runs, {k: v for k, v in groups.items() if len(v) >= 2}


def verse(runs, groups, rng: random.Random) -> list[str]:
    """Four lines, AABB: each line a run of 3-4 words and a rhyming last word (at most 5 words: one bar)."""
    ends = [w for key in rng.sample(sorted(groups), 2) for w in rng.sample(groups[key], 2)]  # two distinct rhymes
    return [" ".join(rng.choice(runs)[: rng.choice((3, 4))] + [end]) for end in ends]


def spoken_word(word: str, voice: str, pitch: int) -> np.ndarray:
    """One word from espeak-ng, leading and trailing silence trimmed, so its onset is its first sample."""
    x = speak(word, voice, pitch, 230, SR)
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def song(lines: list[str], voice: str, bpm: float, seed: int) -> dict:
    """Beat (one intro bar, then one bar per line) and vocals with each word on its slot (`word_slots`)."""
    rng = random.Random(seed)
    drums, beats = beat(bpm, 1 + len(lines), seed)
    vocals = np.zeros_like(drums)
    eighth = 30.0 / bpm
    pitch = rng.choice([35, 50, 65])
    onsets_s = []
    for word, slot in zip(" ".join(lines).split(), word_slots(lines)):
        at = slot * eighth
        w = spoken_word(word, voice, pitch)[: int(2 * eighth * SR)]
        fade = np.minimum(1.0, np.linspace(len(w) / 200, 0, len(w)))  # 12 ms fade-out where words are cut
        start = int(at * SR)
        n = min(len(w), len(vocals) - start)
        vocals[start : start + n] += (w * fade)[:n]
        onsets_s.append(round(at, 4))
    vocals = 0.8 * vocals / max(np.abs(vocals).max(), 1e-6)
    mix = vocals + 0.6 * drums
    mix = mix / max(1.0, np.abs(mix).max() / 0.98)
    return {"beat": drums, "vocals": vocals.astype(np.float32), "mix": mix.astype(np.float32),
            "beat_times": beats, "onsets": onsets_s}


def build(corpus: str, out: str, train: int, heldout: int, seed: int = 0):
    for split, count, voices in (("train", train, ESPEAK_TRAIN), ("heldout", heldout, ESPEAK_HELDOUT)):
        runs, groups = word_pool(corpus, split if split == "train" else "heldout", seed)
        rng = random.Random(seed + (split == "heldout"))
        folder = os.path.join(out, split)
        os.makedirs(folder, exist_ok=True)
        meta_path = os.path.join(out, f"{split}.jsonl")
        done = resume_records(meta_path)  # resume: keep what is there (a line cut by a kill is redone)
        with open(meta_path, "a", encoding="utf-8") as meta:
            for i in range(count):
                lines, bpm, voice = verse(runs, groups, rng), rng.randint(80, 110), voices[i % len(voices)]
                sid = f"{split}-{i:04d}"
                if sid in done:
                    continue
                s = song(lines, voice, bpm, seed * 100003 + i)
                paths = {}
                for stem in ("beat", "vocals", "mix"):
                    paths[stem] = os.path.join(folder, f"{sid}.{stem}.wav")
                    save_audio(paths[stem], s[stem], SR)
                rec = {"id": sid, "lyrics": lines, "phonemes": [phonemes(ln) for ln in lines], "bpm": bpm,
                       "voice": voice, "beat_times": [round(float(t), 4) for t in s["beat_times"]],
                       "onsets": s["onsets"], **paths}
                meta.write(json.dumps(rec) + "\n")
                meta.flush()
        print(f"{split}: {count} songs", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/text")
    ap.add_argument("--out", default="data/rap")
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--heldout", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    build(a.corpus, a.out, a.train, a.heldout, a.seed)


if __name__ == "__main__":
    main()
