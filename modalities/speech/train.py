"""Train the speech model's parts from the clips `modalities.speech.data` built. Steps, in order:

    python -m modalities.speech.train tokenizer --data data/speech --out models/zoo/speech-tts
    python -m modalities.speech.train sequences --data data/speech --out models/zoo/speech-tts
    specgen train-lm --preset text-12m --vocab V --train data/speech/train.pt --heldout data/speech/heldout.pt \\
        --out runs/speech-lm --context 1024 --seq 1024            (V is printed by the sequences step)
    specgen train-lm ... --export models/zoo/speech-tts/lm ; then copy speech_vocab.json into it
    python -m modalities.speech.train flow --data data/speech --out models/zoo/speech-tts --steps 3000
    python -m modalities.speech.train vocoder --data data/speech --out models/zoo/speech-tts --max-frames 64
    python -m modalities.speech.train meldecoder --data data/speech-aligned --out models/zoo/speech-tts  (one voice)
    specgen train-heads --target models/zoo/speech-tts/lm --kind hydra --data data/speech/train.pt \\
        --out models/zoo/speech-tts/heads --temperature 1.0 --new-tokens 200 --rules sample tolerance:3 tolerance:5
    (--kind medusa gives the paper's Medusa heads, shipped as heads-medusa/; scripts/train_media_zoo.sh has both)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time

import torch

from modalities.audio.features import MelConfig, load_audio, log_mel
from modalities.audio.flow import FlowDecoder
from modalities.audio.tokenizer import SpeechTokenizer

from .pipeline import PROMPT_SECONDS
from modalities.specials import EOS

from .vocab import SpeechVocab


def clips(data: str, split: str) -> list[dict]:
    path = os.path.join(data, f"{split}.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} is missing: build the clips first (python -m modalities.speech.data)")
    return [json.loads(ln) for ln in open(path, encoding="utf-8")]


def mel_of(clip: dict, tok: SpeechTokenizer | None = None) -> torch.Tensor:
    cfg = tok.cfg if tok else MelConfig()
    return log_mel(torch.from_numpy(load_audio(clip["path"], cfg.sample_rate)), cfg)


def fit_tokenizer(data: str, out: str, size: int, clips_used: int, seed: int):
    train = clips(data, "train")
    random.Random(seed).shuffle(train)
    mels = [mel_of(c) for c in train[:clips_used]]
    t0 = time.time()
    tok = SpeechTokenizer.fit(mels, size=size, seed=seed)
    tok.save(os.path.join(out, "tokenizer"))
    frames = torch.cat(mels)
    err = (tok.decode_mel(tok.encode_mel(frames)) - frames).pow(2).mean().item()
    print(f"k-means {size} over {len(frames)} frames in {time.time() - t0:.0f} s; log-mel MSE of centroids {err:.3f} "
          f"(frame variance {frames.var(0).mean().item():.3f})")


def build_sequences(data: str, out: str, seed: int, aligned: bool = False, prompt_seconds: float = PROMPT_SECONDS):
    """Per clip: <s> phonemes <sep> 3 s of another clip by the same voice <sep> speech tokens </s>. `aligned`
    (clips from `modalities.speech.data --aligned`): Piper's symbols instead of espeak's phonemes, and the speech
    tokens interleaved with them, each symbol just before the frames it covers; `prompt_seconds` 0 leaves the voice
    prompt out of the prefix (a one-voice model)."""
    from .align import frame_bounds, interleave

    tok = SpeechTokenizer.load(os.path.join(out, "tokenizer"))
    rng = random.Random(seed)
    splits = {s: clips(data, s) for s in ("train", "heldout")}
    prompt_frames = int(prompt_seconds * tok.cfg.frames_per_second)
    if aligned:
        if any("durations" not in c for c in splits["train"]):
            raise SystemExit(f"{data} has clips without an alignment: build it with modalities.speech.data --aligned")
        vocab = SpeechVocab.from_symbols([c["symbols"] for c in splits["train"]], tok.size, prompt_frames)
    else:
        vocab = SpeechVocab.from_texts([c["phonemes"] for c in splits["train"]], tok.size)
    for split, items in splits.items():
        tokens = {c["id"]: tok.encode_mel(mel_of(c, tok)).tolist() for c in items}
        by_voice: dict[str, list[str]] = {}
        for c in items:
            by_voice.setdefault(c["voice"], []).append(c["id"])
        seqs = []
        for c in items:
            others = [i for i in by_voice[c["voice"]] if i != c["id"]] or [c["id"]]
            prompt = tokens[rng.choice(others)][:prompt_frames] if prompt_frames else []
            speech = vocab.speech_ids(tokens[c["id"]])
            if aligned:  # a symbol the vocabulary lacks gives its frames to the next one it has
                bounds = frame_bounds(c["durations"], len(speech), tok.cfg.frames_per_second)
                kept = [(vocab.phoneme_id[s], b) for s, b in zip(c["symbols"], bounds) if s in vocab.phoneme_id]
                if not kept:
                    continue
                kept[-1] = (kept[-1][0], len(speech))
                prefix = vocab.prefix([i for i, _ in kept], prompt)
                body = interleave([i for i, _ in kept], [b for _, b in kept], speech)
                if split == "train":
                    vocab.max_run = longest_runs(body, vocab, vocab.max_run or {})
            else:
                prefix = vocab.prefix(vocab.encode_phonemes(c["phonemes"]), prompt)
                body = speech
            seqs.append({"ids": prefix + body + [EOS], "loss_from": len(prefix), "id": c["id"]})
        torch.save(seqs, os.path.join(data, f"{split}.pt"))
        print(f"{split}: {len(seqs)} sequences, longest {max(len(s['ids']) for s in seqs)} tokens")
    os.makedirs(os.path.join(out, "lm"), exist_ok=True)
    vocab.save(os.path.join(out, "lm"))
    print(f"vocabulary: {len(vocab)} ids ({len(vocab.phonemes)} phoneme symbols, {tok.size} speech tokens)")


def longest_runs(ids: list[int], vocab: SpeechVocab, best: dict[str, int]) -> dict[str, int]:
    """`best` updated with an interleaved stream's longest run of speech tokens after each symbol."""
    last, run = None, 0
    for i in ids:
        if vocab.is_symbol(i):
            last, run = vocab.symbol(i), 0
        elif last is not None:
            run += 1
            best[last] = max(best.get(last, 0), run)
    return best


def train_resumable(model, name: str, out: str, steps: int, lr: float, max_minutes: float, loss_at) -> dict:
    """AdamW on `loss_at(step)` (gradients clipped at 1) until `steps` or `max_minutes` of this run, resuming from
    and saving to <out>/<name>.run.pt (every 100 steps and at the end). Returns the run's state."""
    from tqdm import tqdm

    ckpt = os.path.join(out, f"{name}.run.pt")
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    state = {"step": 0, "log": []}
    if os.path.isfile(ckpt):
        saved = torch.load(ckpt)
        model.load_state_dict(saved[name])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
    t_start = time.time()
    bar = tqdm(total=steps, initial=state["step"], desc=name)

    def checkpoint():
        torch.save({name: model.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)

    while state["step"] < steps and (time.time() - t_start) / 60 < max_minutes:
        loss = loss_at(state["step"])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if state["step"] % 100 == 0:
            state["log"].append({"step": state["step"], "loss": loss.item(),
                                 "minutes": state.get("minutes", 0.0) + (time.time() - t_start) / 60})
            checkpoint()
    state["minutes"] = state.get("minutes", 0.0) + (time.time() - t_start) / 60
    checkpoint()
    return state


def train_flow(data: str, out: str, steps: int, batch: int, max_frames: int, seed: int, lr: float,
               max_minutes: float, pad: bool = False):
    """OT-CFM on (tokens, mel) crops with a 3 s prompt from another clip by the same voice; resumable. The crops
    are as wide as the shortest clip picked (up to `max_frames`), or with `pad` as wide as the longest, shorter
    clips padded and masked out of attention and loss, so every position a long sentence reaches is trained."""
    from tqdm import tqdm

    tok = SpeechTokenizer.load(os.path.join(out, "tokenizer"))
    train = clips(data, "train")
    mels = {c["id"]: mel_of(c, tok) for c in tqdm(train, desc="mels")}
    by_voice: dict[str, list[str]] = {}
    for c in train:
        by_voice.setdefault(c["voice"], []).append(c["id"])
    flow = FlowDecoder({"vocab": tok.size, "n_mels": tok.cfg.n_mels})
    g = torch.Generator().manual_seed(seed)
    prompt_frames = int(PROMPT_SECONDS * tok.cfg.frames_per_second)

    def loss_at(step: int) -> torch.Tensor:
        rng = random.Random(seed * 1000003 + step)
        picks = [rng.choice(train) for _ in range(batch)]
        lengths = [len(mels[c["id"]]) for c in picks]
        width = min(max_frames, max(lengths) if pad else min(lengths))
        targets, prompts, masks = [], [], []
        for c in picks:
            m = mels[c["id"]]
            start = rng.randrange(0, max(0, len(m) - width) + 1)
            crop = m[start : start + width]
            masks.append(torch.arange(width) < len(crop))
            targets.append(torch.nn.functional.pad(crop, (0, 0, 0, width - len(crop)), value=crop.min().item()))
            p = mels[rng.choice(by_voice[c["voice"]])][:prompt_frames]
            prompts.append(torch.nn.functional.pad(p, (0, 0, 0, prompt_frames - len(p)), value=p.min().item()))
        mel, prompt = torch.stack(targets), torch.stack(prompts)
        tokens = tok.encode_mel(mel.flatten(0, 1)).view(batch, width)
        mask = torch.stack(masks) if pad else None
        return flow.loss(tokens, tok.normalize(mel), tok.normalize(prompt), frame_mask=mask, generator=g)

    train_resumable(flow, "flow", out, steps, lr, max_minutes, loss_at)
    flow.save(os.path.join(out, "flow"), dtype=torch.bfloat16)  # half the size; loading casts back to float32


def train_mel_decoder(data: str, out: str, steps: int, batch: int, max_frames: int, seed: int, lr: float,
                      max_minutes: float):
    """The token-to-mel decoder (modalities/audio/meldecoder.py) on random crops of the training clips: their own
    tokens in, their log-mel out (L1); resumable from <out>/meldecoder.run.pt. Needs a one-voice tokenizer in
    <out>/tokenizer (the decoder has no voice prompt)."""
    from tqdm import tqdm

    from modalities.audio.meldecoder import MelDecoder

    tok = SpeechTokenizer.load(os.path.join(out, "tokenizer"))
    mels = [m for m in (mel_of(c, tok) for c in tqdm(clips(data, "train"), desc="mels")) if len(m) >= 8]
    if not mels:
        raise SystemExit(f"{data} has no training clip of 8 frames or more: build the clips first")
    tokens = [tok.encode_mel(m) for m in mels]
    decoder = MelDecoder({"vocab": tok.size, "n_mels": tok.cfg.n_mels})

    def loss_at(step: int) -> torch.Tensor:
        rng = random.Random(seed * 1000003 + step)
        picks = [rng.randrange(len(mels)) for _ in range(batch)]
        width = min(max_frames, *(len(mels[i]) for i in picks))  # as wide as the shortest clip picked
        starts = [rng.randrange(0, len(mels[i]) - width + 1) for i in picks]
        mel = torch.stack([mels[i][s : s + width] for i, s in zip(picks, starts)])
        ids = torch.stack([tokens[i][s : s + width] for i, s in zip(picks, starts)])
        return decoder.loss(ids, mel, tok)

    state = train_resumable(decoder, "meldecoder", out, steps, lr, max_minutes, loss_at)
    decoder.save(os.path.join(out, "meldecoder"), dtype=torch.bfloat16)  # half the size; loading casts back
    with torch.no_grad():  # what the correction buys over the centroids, on the training clips (L1, z-scores)
        sample = random.Random(seed).sample(range(len(mels)), min(64, len(mels)))
        cent = sum((tok.normalize(tok.decode_mel(tokens[i])) - tok.normalize(mels[i])).abs().mean() for i in sample)
        dec = sum((tok.normalize(decoder.decode(tok, tokens[i])) - tok.normalize(mels[i])).abs().mean()
                  for i in sample)
    print(f"{state['step']} steps; L1 of the centroids {cent / len(sample):.3f}, of the decoder "
          f"{dec / len(sample):.3f} (normalised log-mel, {len(sample)} training clips)")


def train_vocoder(data: str, out: str, steps: int, batch: int, max_frames: int, seed: int, lr: float,
                  max_minutes: float):
    """The neural vocoder (modalities/audio/vocoder.py) on random crops of the training clips, each rebuilt from its own
    log-mel; resumable from <out>/vocoder.run.pt."""
    from tqdm import tqdm

    from modalities.audio.vocoder import MelVocoder

    cfg = MelConfig()
    audio = [torch.from_numpy(load_audio(c["path"], cfg.sample_rate)) for c in tqdm(clips(data, "train"), "clips")]
    width = max_frames * cfg.hop
    audio = [a for a in audio if len(a) > width]
    if not audio:
        raise SystemExit(f"no training clip is longer than --max-frames {max_frames} "
                         f"({width / cfg.sample_rate:.2f} s): give a smaller --max-frames")
    vocoder = MelVocoder({"n_mels": cfg.n_mels, "n_fft": cfg.n_fft, "hop": cfg.hop, "sample_rate": cfg.sample_rate,
                          "fmin": cfg.fmin, "fmax": cfg.fmax})  # the mel frames it reads, checked at load

    def loss_at(step: int) -> torch.Tensor:
        rng = random.Random(seed * 1000003 + step)
        crops = []
        for a in (rng.choice(audio) for _ in range(batch)):
            start = rng.randrange(0, len(a) - width)
            crops.append(a[start : start + width])
        return vocoder.loss(torch.stack(crops), cfg)

    train_resumable(vocoder, "vocoder", out, steps, lr, max_minutes, loss_at)
    vocoder.save(os.path.join(out, "vocoder"), dtype=torch.bfloat16)  # half the size; loading casts back


def write_prompt(data: str, out: str, voice: str = "piper-joe@1.1"):
    """The model's default voice prompt: the first 3 s of the longest held-out clip in `voice`."""
    from modalities.audio.features import save_audio

    picks = [c for c in clips(data, "heldout") if c["voice"] == voice]
    if not picks:
        raise SystemExit(f"no held-out clip in voice {voice!r}")
    clip = max(picks, key=lambda c: c["seconds"])
    audio = load_audio(clip["path"], MelConfig().sample_rate)[: int(PROMPT_SECONDS * MelConfig().sample_rate)]
    save_audio(os.path.join(out, "prompt.wav"), audio, MelConfig().sample_rate)
    print(f"prompt.wav: {len(audio) / MelConfig().sample_rate:.1f} s of {clip['id']} ({voice}): {clip['text']!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["tokenizer", "sequences", "flow", "meldecoder", "vocoder", "prompt"])
    ap.add_argument("--data", default="data/speech")
    ap.add_argument("--out", default="models/zoo/speech-tts")
    ap.add_argument("--size", type=int, default=512, help="tokenizer: k-means codebook size")
    ap.add_argument("--clips", type=int, default=600, help="tokenizer: clips to fit on")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-frames", type=int, default=200, help="crop length in mel frames (vocoder: try 64)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--max-minutes", type=float, default=1e9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aligned", action="store_true", help="sequences: interleave Piper's symbols (aligned data)")
    ap.add_argument("--prompt-seconds", type=float, default=PROMPT_SECONDS,
                    help="sequences: voice prompt in the LM's prefix (0: none, a one-voice model)")
    ap.add_argument("--pad", action="store_true", help="flow: crops as wide as the longest clip, padded and masked")
    a = ap.parse_args(argv)
    if a.step == "tokenizer":
        fit_tokenizer(a.data, a.out, a.size, a.clips, a.seed)
    elif a.step == "sequences":
        build_sequences(a.data, a.out, a.seed, a.aligned, a.prompt_seconds)
    elif a.step == "prompt":
        write_prompt(a.data, a.out)
    elif a.step == "vocoder":
        train_vocoder(a.data, a.out, a.steps, a.batch, a.max_frames, a.seed, a.lr, a.max_minutes)
    elif a.step == "meldecoder":
        train_mel_decoder(a.data, a.out, a.steps, a.batch, a.max_frames, a.seed, a.lr, a.max_minutes)
    else:
        train_flow(a.data, a.out, a.steps, a.batch, a.max_frames, a.seed, a.lr, a.max_minutes, a.pad)


if __name__ == "__main__":
    main()
