"""Where copy synthesis loses words: fresh Piper recordings of training-corpus sentences (never the benchmark's
held-out ones) pushed through each stage of a speech model's audio half, every output scored by Whisper base.

    python -m modalities.speech.ceiling --model models/zoo/speech-tts --corpus data/text --sentences 12

Rows, each a stage added to the one before:
- the recording;
- its log-mel through the neural vocoder, and through Griffin-Lim (the mel and the vocoders alone);
- its speech tokens' centroids through the neural vocoder (what the tokenizer keeps, no flow);
- its speech tokens through the learned token-to-mel decoder and the vocoder, when the model ships one;
- its speech tokens through the flow decoder at `--steps` Euler steps, then the vocoder (the copy synthesis that
  bounds every generated row), with the flow's voice prompt cut from another recording of the same voice.
With `--fit-sizes`, k-means tokenizers of those sizes are also fitted on `--fit-sentences` other Piper recordings
(training sentences, the voice alone) and their centroids vocoded: how many clusters one voice needs to keep its
words. Every flow row is also scored on the clips up to `--short` seconds and on the longer ones apart, since the flow's
positions are learned and long clips reach positions it rarely trained on. Written to <out>/speech-ceiling.{json,md}.
"""
from __future__ import annotations

import argparse
import random

import numpy as np

from modalities.bench import settings, write_outputs

COLUMNS = [("method", "stage", str), ("wer", "WER (Whisper base)", lambda v: f"{v:.1%}"),
           ("wer_short", "WER, short clips", lambda v: f"{v:.1%}"),
           ("wer_long", "WER, long clips", lambda v: f"{v:.1%}"),
           ("mcd", "MCD dB (lower better)", lambda v: f"{v:.2f}")]


def recordings(corpus: str, count: int, seed: int, skip: int = 0, paces=(1.0,)) -> list[tuple[str, np.ndarray]]:
    """(sentence, 16 kHz audio) for `count` training-split sentences read by the Piper voice, taken from the far end
    of the shuffled list (unlikely to be in data/speech) after the last `skip`; the pace (length scale) drawn from
    `paces`."""
    from .data import Synth, sentences

    texts = sentences(corpus, "train", seed)
    if len(texts) < count + skip:
        raise ValueError(f"{corpus} has only {len(texts)} usable training sentences, {count + skip} are needed: "
                         f"build the corpus first (python -m modalities.text.corpus --out {corpus})")
    synth = Synth()
    rng = random.Random(seed)
    picked = texts[len(texts) - skip - count: len(texts) - skip]
    return [(t, synth.piper_clip(rng.choice(paces), t, rng)) for t in picked]


def stages(tts, audio: np.ndarray, prompt_mel, steps: list[int], seed: int, fitted=()) -> dict[str, np.ndarray]:
    import torch

    from modalities.audio.features import griffin_lim, log_mel
    from modalities.audio.flow import tokens_to_audio

    tok = tts.tokenizer
    mel = log_mel(torch.from_numpy(audio), tok.cfg)
    tokens = tok.encode_mel(mel)
    out = {"recording": audio}
    if tts.vocoder is not None:
        out["mel, neural vocoder"] = tts.vocoder.vocode(mel).numpy()
    out["mel, Griffin-Lim"] = griffin_lim(mel, tok.cfg).numpy()
    centroids = tok.decode_mel(tokens)
    out["token centroids, " + ("neural vocoder" if tts.vocoder is not None else "Griffin-Lim")] = (
        tts.vocoder.vocode(centroids) if tts.vocoder is not None else griffin_lim(centroids, tok.cfg)).numpy()
    if tts.mel_decoder is not None:  # the learned token-to-mel decoder over the same tokens
        out["tokens, mel decoder, " + ("neural vocoder" if tts.vocoder is not None else "Griffin-Lim")] = (
            tokens_to_audio(None, tok, tokens, None, vocoder=tts.vocoder, mel_decoder=tts.mel_decoder))
    for other in fitted:  # tokenizers fitted on the voice alone: their centroids through the same vocoder
        c = other.decode_mel(other.encode_mel(mel))
        out[f"token centroids, K={other.size} fitted on the voice"] = (
            tts.vocoder.vocode(c) if tts.vocoder is not None else griffin_lim(c, tok.cfg)).numpy()
    for s in steps:
        out[f"tokens, flow {s} steps, vocoder"] = tokens_to_audio(tts.flow, tok, tokens, prompt_mel, s, seed,
                                                                  tts.vocoder)
    return out


def run(args) -> str:
    import torch

    from modalities.audio.features import log_mel
    from modalities.audio.metrics import mel_cepstral_distortion
    from modalities.audio.recognizer import Recognizer

    from .pipeline import PROMPT_SECONDS, SpeechPipeline

    if args.sentences < 1 or (args.fit_sizes and args.fit_sentences < 1):
        raise ValueError("--sentences and --fit-sentences must be at least 1")
    tts = SpeechPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    clips = recordings(args.corpus, args.sentences + 1, args.seed)
    (_, prompt_audio), clips = clips[0], clips[1:]  # the first recording is every flow row's voice prompt
    fitted = []
    if args.fit_sizes:
        from modalities.audio.tokenizer import SpeechTokenizer

        fit = recordings(args.corpus, args.fit_sentences, args.seed, skip=args.sentences + 1, paces=(0.85, 1.0, 1.2))
        mels = [log_mel(torch.from_numpy(a), tts.tokenizer.cfg) for _, a in fit]
        fitted = [SpeechTokenizer.fit(mels, size=k, seed=args.seed, cfg=tts.tokenizer.cfg) for k in args.fit_sizes]
        print(f"fitted {args.fit_sizes} on {sum(len(m) for m in mels)} frames", flush=True)
    prompt_mel = log_mel(torch.from_numpy(prompt_audio[: int(PROMPT_SECONDS * tts.sample_rate)]), tts.tokenizer.cfg)
    outs: dict[str, list[np.ndarray]] = {}
    for i, (_, audio) in enumerate(clips):
        for name, wave in stages(tts, audio, prompt_mel, args.steps, args.seed + i, fitted).items():
            outs.setdefault(name, []).append(wave)
        print(f"clip {i + 1}/{len(clips)} done", flush=True)
    rec = Recognizer()
    texts = [t for t, _ in clips]
    seconds = np.array([len(a) / tts.sample_rate for _, a in clips])
    short = seconds <= args.short
    rows = []
    for name, waves in outs.items():
        row = {"group": "copy synthesis", "method": name, "wer": rec.wer(texts, waves, tts.sample_rate)[0]}
        if name != "recording":
            row["mcd"] = float(np.mean([mel_cepstral_distortion(w, a) for w, (_, a) in zip(waves, clips)]))
        if name.startswith("tokens"):
            for key, pick in (("wer_short", short), ("wer_long", ~short)):
                if pick.any():
                    row[key] = rec.wer([t for t, p in zip(texts, pick) if p], [w for w, p in zip(waves, pick) if p],
                                       tts.sample_rate)[0]
        rows.append(row)
    meta = settings(args)
    meta.update(clip_seconds=[round(float(s), 2) for s in seconds], short_clips=int(short.sum()))
    md = write_outputs(args.out, "speech-ceiling", rows, meta, "speech copy synthesis", COLUMNS)
    print(md)
    return md


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/zoo/speech-tts")
    ap.add_argument("--corpus", default="data/text")
    ap.add_argument("--sentences", type=int, default=12)
    ap.add_argument("--steps", type=int, nargs="*", default=[8, 32],
                    help="flow Euler steps, a row each (none: no flow rows)")
    ap.add_argument("--fit-sizes", type=int, nargs="*", default=[],
                    help="also fit k-means tokenizers of these sizes on the voice alone (a centroid row each)")
    ap.add_argument("--fit-sentences", type=int, default=400, help="recordings the --fit-sizes tokenizers see")
    ap.add_argument("--short", type=float, default=3.5, help="clips up to this many seconds count as short")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device")
    ap.add_argument("--dtype")
    ap.add_argument("--out", default="bench_out")
    args = ap.parse_args(argv)
    try:
        run(args)
    except ValueError as e:
        ap.error(str(e))


if __name__ == "__main__":
    main()
