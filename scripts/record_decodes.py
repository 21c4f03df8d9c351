"""Record the token ids of short greedy and seeded-sampling decodes on the shipped zoo models, per modality and
method, as JSON: run it before and after a change that should not change behaviour, and compare the two files.

    .venv/bin/python scripts/record_decodes.py --out /tmp/decodes-before.json
    .venv/bin/python scripts/record_decodes.py --out /tmp/decodes-after.json --compare /tmp/decodes-before.json

Each decode's budget is capped at `--tokens` new tokens (`--rap-tokens` for rap): the speech, image and rap
pipelines run as they are up to their call of the decode loop (prefix, drafter, acceptance rule, sampling), whose
budget is capped and whose tokens are recorded; the audio and pixel stages after it are skipped. Besides the
tokens, each record keeps the target and draft forwards, which change when the drafts change even where greedy
output cannot.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(ROOT, "models", "zoo")
TEXT_PROMPTS = ["def fibonacci(n):\n    ", "The river ran past the old mill and"]
SEED, TEMPERATURE = 1234, 0.8


class Captured(Exception):
    """Raised by the capped loop to stop a pipeline after its token stage."""

    def __init__(self, outs):
        super().__init__("captured")
        self.outs = outs


def capped_loop(module, tokens: int):
    """Replace `module.generate` (the decode loop as a pipeline module imported it) by one that caps the budget,
    runs, and raises `Captured` with the generations; returns a function that puts the original back."""
    original = module.generate

    def run(*args, **kwargs):
        args = list(args)
        if len(args) > 4:
            args[4] = min(args[4], tokens)
        else:
            kwargs["max_new_tokens"] = min(kwargs.get("max_new_tokens", tokens), tokens)
        raise Captured(original(*args, **kwargs))

    module.generate = run
    return lambda: setattr(module, "generate", original)


def record(outs) -> list[dict]:
    return [{"tokens": o.token_ids, "target_forwards": o.stats.target_forwards,
             "draft_forwards": o.stats.draft_forwards} for o in outs]


def media(module, prefix: str, call, runs: dict, tokens: int) -> dict:
    """Run `call(**kw)` (a pipeline's generate; drafting options gathered into a `DraftConfig`) for each named `kw`
    of `runs` with `module`'s decode loop capped; the records under '<prefix>/<name>'."""
    from modalities.bench import with_drafting

    out = {}
    for name, kw in runs.items():
        restore = capped_loop(module, tokens)
        try:
            call(**with_drafting(kw))
            raise RuntimeError("the pipeline returned without calling the decode loop")
        except Captured as c:
            out[f"{prefix}/{name}"] = record(c.outs)
        finally:
            restore()
    return out


def text_decodes(tokens: int) -> dict:
    from modalities.text import TextPipeline

    out = {}
    target = os.path.join(ZOO, "text-30m")
    drafts = {"ar": None, "ngram": None, "pard": os.path.join(ZOO, "text-pard-5m"),
              "draft_model": os.path.join(ZOO, "text-draft-5m")}
    heads = ("hydra", "medusa", "koala", "redrafter")
    drafts.update({kind: os.path.join(ZOO, "text-30m-heads", kind) for kind in heads})
    for method, draft in drafts.items():
        pipe = TextPipeline.from_pretrained(target, draft=draft, method=method, device="cpu")
        sampled = {"greedy": {"temperature": 0.0}, "sample": {"temperature": TEMPERATURE, "seed": SEED}}
        if method == "redrafter":  # beams are top guesses; sampled decodes are exact, the same
            sampled["sample-topk"] = {"temperature": TEMPERATURE, "seed": SEED, "top_k": 20}
        for name, kw in sampled.items():
            gens = pipe.generate(TEXT_PROMPTS, max_new_tokens=tokens, **kw)
            out[f"text/{method}/{name}"] = record(gens)
    return out


def speech_decodes(tokens: int) -> dict:
    import modalities.speech.pipeline as sp

    pipe = sp.SpeechPipeline.from_pretrained(os.path.join(ZOO, "speech-tts"), device="cpu")
    say = lambda **kw: pipe.generate("The quick brown fox jumps over the lazy dog.", seed=SEED, **kw)  # noqa: E731
    out = media(sp, "speech", say, {
        "ar/greedy": dict(method="ar", temperature=0.0), "ar/sample": dict(method="ar"),
        "vadusa/tolerance-3": dict(), "vadusa/tolerance-1-greedy": dict(tolerance=1, temperature=0.0),
        "vadusa/sample": dict(acceptance="sample"), "vadusa/sample-top": dict(acceptance="sample", draws="top"),
        "vadusa/sample-eager": dict(acceptance="sample", backend="eager")}, tokens)
    return out


def image_decodes(tokens: int) -> dict:
    import modalities.image.pipeline as ip

    folder = os.path.join(ZOO, "image-scenes")
    caption = "a red circle left of a blue square"
    pipe = ip.ImagePipeline.from_pretrained(folder, device="cpu")
    out = media(ip, "image", lambda **kw: pipe.generate(caption, seed=SEED, **kw), {
        "ar/greedy": dict(method="ar", temperature=0.0), "ar/sample": dict(method="ar"),
        "hawk/greedy": dict(temperature=0.0), "hawk/sample": dict(), "hawk/sample-top": dict(draws="top"),
        "hawk/sample-no-vertical": dict(draws="top", vertical=False),
        "hawk/greedy-no-vertical": dict(temperature=0.0, vertical=False),
        "hawk/relaxed": dict(acceptance="relaxed"), "hawk/sample-eager": dict(backend="eager"),
        "hawk/two-samples": dict(samples=2)}, tokens)
    medusa = ip.ImagePipeline.from_pretrained(folder, device="cpu", heads=os.path.join(folder, "heads-medusa"))
    return {**out, **media(ip, "image/hawk-medusa", lambda **kw: medusa.generate(caption, seed=SEED, **kw), {
        "greedy": dict(temperature=0.0), "sample-top": dict(draws="top"), "sample": dict()}, tokens)}


def rap_decodes(tokens: int, tmp: str) -> dict:
    import modalities.rap.pipeline as rp
    from modalities.rap.beats import SR, beat
    from modalities.audio.features import save_audio

    beat_path = os.path.join(tmp, "beat.wav")
    save_audio(beat_path, beat(96, 3, seed=2)[0], SR)
    pipe = rp.RapPipeline.from_pretrained(os.path.join(ZOO, "rap"), device="cpu")
    rap = lambda **kw: pipe.generate("we walk the road today\nand sing the night away", beat_path,  # noqa: E731
                                     seed=SEED, **kw)
    return media(rp, "rap", rap, {
        "ar/greedy": dict(method="ar", temperature=0.0), "ar/sample": dict(method="ar"),
        "heads/greedy": dict(temperature=0.0), "heads/sample": dict(), "heads/sample-top": dict(draws="top"),
        "heads/tolerance-3": dict(tolerance=3), "heads/sample-eager": dict(backend="eager")}, tokens)


def compare(now: dict, before: dict) -> int:
    """Print every decode that differs (or is missing on either side); returns how many."""
    bad = 0
    for key in sorted(set(now) | set(before)):
        if key not in now or key not in before:
            print(f"only {'before' if key in before else 'now'}: {key}")
            bad += 1
        elif now[key] != before[key]:
            a, b = before[key], now[key]
            what = "tokens" if [r["tokens"] for r in a] != [r["tokens"] for r in b] else "forwards"
            print(f"differs ({what}): {key}\n  before {a}\n  now    {b}")
            bad += 1
    print(f"{len(before)} decodes before, {len(now)} now, {bad} differ")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the JSON file to write")
    ap.add_argument("--tokens", type=int, default=48, help="new tokens per decode")
    ap.add_argument("--rap-tokens", type=int, default=192,
                    help="new tokens per rap decode (the first bar, 2.5 s or 125 tokens at 96 BPM, is a silent intro)")
    ap.add_argument("--only", nargs="*", default=["text", "speech", "image", "rap"], help="modalities to record")
    ap.add_argument("--compare", help="an earlier recording: print the decodes that differ, exit 1 if any")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one fixed thread count: products sum in one order run to run
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for modality in args.only:
            t0 = time.perf_counter()
            fn = {"text": text_decodes, "speech": speech_decodes, "image": image_decodes,
                  "rap": lambda n: rap_decodes(args.rap_tokens, tmp)}[modality]
            out.update(fn(args.tokens))
            print(f"{modality}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
    print(f"wrote {len(out)} decodes to {args.out}")
    if args.compare:
        with open(args.compare) as f:
            return 1 if compare(out, json.load(f)) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
