"""The `specgen` console command: one subcommand per job (generation per modality, training, benchmarks, batch jobs
and the demo)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import torch

from modalities.audio.vocoder import VOCODERS
from specgen.acceptance import RULES
from specgen import DraftConfig
from specgen.drafters import BACKENDS, DRAWS, METHODS


def read_prompts(args) -> list[str]:
    """Prompts from --prompt and --prompts-file (.jsonl: one {"prompt": ...} per line; else one per line)."""
    prompts = list(args.prompt or [])
    if args.prompts_file:
        try:
            with open(args.prompts_file, encoding="utf-8") as f:
                lines = [ln.rstrip("\n") for ln in f if ln.strip()]
        except OSError as e:
            raise ValueError(f"cannot read --prompts-file {args.prompts_file!r}: {e.strerror}") from e
        if args.prompts_file.endswith(".jsonl"):
            for i, ln in enumerate(lines, 1):
                try:
                    prompts.append(json.loads(ln)["prompt"])
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(f"{args.prompts_file} line {i}: expected a JSON object with a \"prompt\" "
                                     f"field") from e
        else:
            prompts.extend(lines)
    if not prompts:
        raise ValueError("no prompt given: use --prompt TEXT or --prompts-file FILE")
    return prompts


def add_text(sub):
    p = sub.add_parser("text", help="generate text with a speculative method")
    p.add_argument("--model", required=True, help="target checkpoint folder")
    p.add_argument("--draft", help="draft checkpoint folder (pard, draft_model)")
    p.add_argument("--method", choices=list(METHODS),
                   help="decoding method (default: pard with a PARD draft, the heads' kind with draft heads, "
                        "draft_model with another draft, else ar)")
    p.add_argument("--acceptance", choices=sorted(RULES),
                   help="acceptance rule (default: greedy at temperature 0, else the lossless sample rule)")
    p.add_argument("--tolerance", type=int, help="k for --acceptance tolerance (lossy above 1)")
    p.add_argument("--prompt", action="append", help="a prompt (repeat for several)")
    p.add_argument("--prompts-file", help="a file of prompts: one per line, or .jsonl with a \"prompt\" field")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--num-draft-tokens", "-k", type=int, default=8)
    p.add_argument("--stop", action="append", help="stop string (repeat for several)")
    p.add_argument("--batch-size", type=int, default=1, help="prompts decoded together")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when present)")
    p.add_argument("--dtype", help="float32, bfloat16 or float16 (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--compare-ar", action="store_true", help="also run ar on the same prompts and print the speedup")
    p.add_argument("--json", action="store_true", help="one JSON object per prompt")
    add_drafting(p)
    p.set_defaults(run=run_text)


def run_text(args):
    from modalities.text import TextPipeline

    prompts = read_prompts(args)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    pipe = TextPipeline.from_pretrained(args.model, draft=args.draft, method=args.method, device=args.device,
                                        dtype=args.dtype, num_draft_tokens=args.num_draft_tokens,
                                        drafting=drafting_of(args))
    settings = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                    top_p=args.top_p, seed=args.seed, stop=args.stop)
    if args.acceptance:
        settings["acceptance"] = args.acceptance
    if args.tolerance is not None:
        settings["tolerance"] = args.tolerance
    if args.compare_ar:  # warm both methods up, so neither timing carries first-call costs
        for method in (pipe.method, "ar"):
            pipe.generate(prompts[0], method=method, max_new_tokens=min(4, args.max_new_tokens))
    for i in range(0, len(prompts), args.batch_size):
        batch = prompts[i : i + args.batch_size]
        outs = pipe.generate(batch, **settings)
        ar_settings = {k: v for k, v in settings.items() if k not in ("acceptance", "tolerance")}
        base = pipe.generate(batch, method="ar", **ar_settings) if args.compare_ar else [None] * len(outs)
        for out, ar in zip(outs, base):
            record = out.as_dict()
            record.pop("finish_reason")
            if ar is not None:
                record["ar_stats"] = ar.stats.as_dict()
                record["speedup_over_ar"] = speedup(out, ar)
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                print(out.text)
                s = out.stats
                line = (f"[{pipe.method}] {s.new_tokens} tokens in {s.wall_s:.2f} s, {s.tokens_per_s:.1f} tok/s, "
                        f"mean accepted {s.mean_accepted:.2f} per target forward")
                if ar is not None:
                    line += f"; ar {ar.stats.tokens_per_s:.1f} tok/s -> speedup {record['speedup_over_ar']:.2f}x"
                print(line, file=sys.stderr, flush=True)


def speedup(out, ar) -> float:
    """Tokens/s ratio of a method over ar on the same prompt."""
    return out.stats.tokens_per_s / ar.stats.tokens_per_s if ar.stats.tokens_per_s else float("nan")


DRAFT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_drafting(p: argparse.ArgumentParser, draws_help: str | None = None, vertical: bool = False):
    """The options of a `DraftConfig`: how the head methods draft."""
    p.add_argument("--tree-size", type=int, help="candidate nodes per round (default: the heads' measured CPU size, "
                                                 "else 8 on a CPU and 32 on CUDA)")
    p.add_argument("--draws", default="auto", choices=list(DRAWS),
                   help=draws_help or "the heads' guesses under exact sampling: drawn from the heads (auto, sample) "
                                      "or their top-k (top)")
    p.add_argument("--draft-dtype", choices=list(DRAFT_DTYPES),
                   help="the precision the heads draft in (default: float16 for float32 heads on a CPU)")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS),
                   help="how Hydra++ draft rounds run: auto (specgen's CPU kernel where it applies, else PyTorch), "
                        "kernel, compile (torch.compile) or eager")
    if vertical:
        p.add_argument("--no-vertical", dest="vertical", action="store_false",
                       help="draft with Hawk's horizontal heads only")


def drafting_of(args) -> DraftConfig:
    """The `DraftConfig` of a command's drafting options (`add_drafting`)."""
    return DraftConfig(tree_size=args.tree_size, draws=args.draws, backend=args.backend,
                       dtype=DRAFT_DTYPES[args.draft_dtype] if args.draft_dtype else None,
                       vertical=getattr(args, "vertical", True))


VOCODER = dict(default="auto", choices=list(VOCODERS),
               help="auto: the model's neural vocoder when it ships one, else Griffin-Lim")


def add_media_output(p: argparse.ArgumentParser, out_help: str, **drafting):
    """--out, --device, --dtype, --json and the drafting options (`add_drafting`) of a media command."""
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--json", action="store_true")
    add_drafting(p, **drafting)


def check_out(path: str, ext: str):
    """Refuse an output name of the wrong kind before any work is done."""
    if not path.lower().endswith(ext):
        raise ValueError(f"--out must name a {ext} file, got {path!r}")


def report(args, record: dict, summary: str):
    """One JSON object on stdout with --json, else a one-line summary on stderr."""
    if args.json:
        print(json.dumps(record))
    else:
        print(summary, file=sys.stderr)


def report_counts(counts: dict):
    print(f"{counts['done']} done, {counts['skipped']} already done, {counts['failed']} failed", file=sys.stderr)


def add_speech(sub):
    p = sub.add_parser("speech", help="text to speech with VADUSA speculative decoding")
    p.add_argument("--model", default="models/zoo/speech-tts", help="speech model folder")
    p.add_argument("--text", required=True)
    p.add_argument("--voice-prompt", help="a recording of the voice to imitate (3 s used; any sample rate)")
    p.add_argument("--method", default="vadusa", choices=["vadusa", "ar"])
    p.add_argument("--tolerance", type=int, default=3, help="VADUSA tolerance k (1 = exact)")
    p.add_argument("--temperature", type=float, help="default: the model's own (speech_vocab.json), else 1")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=20.0)
    p.add_argument("--vocoder", **VOCODER)
    p.add_argument("--decoder", default="auto", choices=["auto", "flow", "net", "centroids"],
                   help="tokens to mel: auto (flow matching when the model ships a flow decoder, else its learned "
                        "token-to-mel decoder, else the tokens' centroids)")
    add_media_output(p, "output WAV")
    p.set_defaults(run=run_speech)


def run_speech(args):
    from modalities.speech.pipeline import SpeechPipeline

    check_out(args.out, ".wav")
    tts = SpeechPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    res = tts.generate(args.text, voice_prompt=args.voice_prompt, method=args.method, tolerance=args.tolerance,
                       temperature=args.temperature, top_k=args.top_k, seed=args.seed, max_seconds=args.max_seconds,
                       vocoder=args.vocoder, decoder=args.decoder, drafting=drafting_of(args))
    res.save(args.out)
    record = {"out": args.out, "seconds": len(res.audio) / res.sample_rate, "real_time_factor": res.real_time_factor,
              "stats": res.stats.as_dict()}
    report(args, record, f"wrote {args.out}: {record['seconds']:.2f} s of audio, real-time factor "
                         f"{res.real_time_factor:.2f}, mean accepted {res.stats.mean_accepted:.2f} "
                         f"({res.stats.acceptance})")


def add_image(sub):
    p = sub.add_parser("image", help="text to image over VQ tokens with Hawk speculative decoding")
    p.add_argument("--model", default="models/zoo/image-scenes", help="image model folder")
    p.add_argument("--heads", help="another Hawk heads folder for this model (default: the model's heads/; the zoo "
                                   "model also ships heads-medusa/)")
    p.add_argument("--prompt", required=True, help="a scene caption, e.g. 'a red circle left of a blue square'")
    p.add_argument("--method", default="hawk", choices=["hawk", "ar"])
    p.add_argument("--cfg-scale", type=float, default=3.0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--acceptance", choices=["relaxed"], help="relaxed: LANTERN-style, lossy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", type=int, default=1, help="number of samples, saved side by side")
    add_media_output(p, "output PNG", draws_help="sample: draw the horizontal guesses from the heads (exact, accepted "
                     "more often) and leave the vertical guesses out; top: Hawk's tree of top-k guesses; auto: sample "
                     "when sampling with exact acceptance, else top", vertical=True)
    p.set_defaults(run=run_image)


def run_image(args):
    from modalities.image.pipeline import ImagePipeline

    check_out(args.out, ".png")
    gen = ImagePipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype, heads=args.heads)
    res = gen.generate(args.prompt, cfg_scale=args.cfg_scale, temperature=args.temperature, top_k=args.top_k,
                       method=args.method, seed=args.seed, samples=args.grid, acceptance=args.acceptance,
                       drafting=drafting_of(args))
    res.save(args.out)
    record = {"out": args.out, "samples": len(res.images), "stats": res.stats.as_dict()}
    report(args, record, f"wrote {args.out}: {len(res.images)} image(s), {res.stats.tokens_per_s:.1f} tokens/s, "
                         f"mean accepted {res.stats.mean_accepted:.2f} ({res.stats.acceptance})")


def add_rap(sub):
    p = sub.add_parser("rap", help="lyrics and a beat in, rapped vocals out (Freestyler-style)")
    p.add_argument("--model", default="models/zoo/rap", help="rap model folder")
    p.add_argument("--lyrics-file", required=True, help="lyrics, one line per bar")
    p.add_argument("--beat", required=True, help="the accompaniment (WAV/FLAC, any sample rate)")
    p.add_argument("--voice-prompt", help="a recording of the voice to imitate (3 s used)")
    p.add_argument("--method", default="heads", choices=["heads", "ar"])
    p.add_argument("--tolerance", type=int, help="VADUSA tolerance k for the heads (lossy; default: exact sampling)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocoder", **VOCODER)
    add_media_output(p, "output WAV (the mix; the vocals go beside it as *.vocals.wav)")
    p.set_defaults(run=run_rap)


def run_rap(args):
    from modalities.rap.pipeline import RapPipeline

    check_out(args.out, ".wav")
    try:
        lyrics = open(args.lyrics_file, encoding="utf-8").read()
    except OSError as e:
        raise ValueError(f"cannot read --lyrics-file {args.lyrics_file!r}: {e.strerror}") from e
    rap = RapPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    res = rap.generate(lyrics, args.beat, voice_prompt=args.voice_prompt, method=args.method,
                       temperature=args.temperature, seed=args.seed, tolerance=args.tolerance, vocoder=args.vocoder,
                       drafting=drafting_of(args))
    vocals_path = args.out[:-4] + ".vocals.wav"
    res.save(vocals_path, stem="vocals")
    res.save(args.out)
    record = {"out": args.out, "vocals": vocals_path, "bpm": res.bpm, "seconds": len(res.mix) / res.sample_rate,
              "real_time_factor": res.real_time_factor, "stats": res.stats.as_dict()}
    report(args, record, f"wrote {args.out} and {vocals_path}: {record['seconds']:.1f} s at {res.bpm:.0f} BPM, "
                         f"real-time factor {res.real_time_factor:.2f}, mean accepted {res.stats.mean_accepted:.2f}")


def add_beat(sub):
    p = sub.add_parser("beat", help="write a drum loop to rap over (kick, snare, hi-hat; numpy)")
    p.add_argument("--bpm", type=float, default=96.0, help="tempo, 60-160 (the rap model saw 80-110)")
    p.add_argument("--bars", type=int, default=5, help="4/4 bars; the first is the intro, one lyric line per bar after")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output WAV")
    p.set_defaults(run=run_beat)


def run_beat(args):
    from modalities.audio.features import save_audio
    from modalities.rap.beats import SR, beat

    check_out(args.out, ".wav")
    if not 60 <= args.bpm <= 160:
        raise ValueError(f"--bpm {args.bpm} is outside 60-160: pick a tempo in that range (the model saw 80-110)")
    if not 2 <= args.bars <= 32:
        raise ValueError(f"--bars {args.bars} is outside 2-32: one intro bar plus one bar per lyric line")
    audio, _ = beat(args.bpm, args.bars, args.seed)
    save_audio(args.out, audio, SR)
    print(f"wrote {args.out}: {len(audio) / SR:.1f} s at {args.bpm:g} BPM, room for {args.bars - 1} lyric lines")


def add_wer(sub):
    p = sub.add_parser("wer", help="what Whisper base hears in WAV files, and the word error rate against the text")
    p.add_argument("--audio", nargs="+", required=True, help="WAV files")
    p.add_argument("--text", nargs="+", required=True, help="the words each file should say (one per file)")
    p.set_defaults(run=run_wer)


def run_wer(args):
    from modalities.audio.features import load_audio
    from modalities.audio.recognizer import Recognizer

    if len(args.audio) != len(args.text):
        raise ValueError(f"{len(args.audio)} audio files but {len(args.text)} texts: give one --text per file")
    audios = [load_audio(a, 16000) for a in args.audio]
    wer, heard = Recognizer().wer(args.text, audios, 16000)
    for path, h in zip(args.audio, heard):
        print(f"{path}: {h}")
    print(f"WER {wer:.1%}")


def add_training(sub):
    from specgen.train import heads, lm, pard

    p = sub.add_parser("train-lm", help="train a Llama-format causal LM on token files (resumable)",
                       description=lm.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_lm_arguments(p)
    p.set_defaults(run=lambda a: lm.export(a.out, a.tokenizer, a.export) if a.export else lm.train(
        config_from(lm.LMConfig, a)))
    p = sub.add_parser("train-pard", help="adapt an AR draft into a PARD parallel draft (mask tokens, COD)",
                       description=pard.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pard_arguments(p)
    p.set_defaults(run=lambda a: pard.export(a.out, a.init, a.export) if a.export else pard.train(
        config_from(pard.PardConfig, a)))
    p = sub.add_parser("train-heads", help="train draft heads on a frozen target by self-distillation",
                       description=heads.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_heads_arguments(p)
    p.set_defaults(run=lambda a: heads.train(config_from(heads.HeadsConfig, a)))
    p = sub.add_parser("calibrate-heads", help="measure trained heads per acceptance rule to shape their trees",
                       description=heads.calibrate.__doc__)
    add_calibrate_arguments(p)
    p.set_defaults(run=lambda a: heads.calibrate(config_from(heads.CalibrateConfig, a)))


def config_from(cls, args):
    """A recipe's config dataclass from the parsed options of the same names."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def defaults_of(p: argparse.ArgumentParser, cls):
    """Give the options the defaults of the config dataclass they fill (one source for both)."""
    p.set_defaults(**{f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                      for f in dataclasses.fields(cls)
                      if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING})


MIXED_PRECISION = dict(choices=["auto", "no", "bf16", "fp16"],
                       help="autocast; auto: bf16 on CUDA or a CPU with native bf16, else none (fp32)")


def add_lm_arguments(p: argparse.ArgumentParser):
    from specgen.train.lm import PRESETS, LMConfig

    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--train", required=True, help="token files with weights (a.bin:1,b.bin:1), or a .pt file of "
                                                 "sequences with loss masks (speech, image, rap)")
    p.add_argument("--heldout", required=True, help="held-out token files, or a .pt file of sequences")
    p.add_argument("--tokenizer", help="HF tokenizer folder: its size and special ids (text models)")
    p.add_argument("--vocab", type=int, help="vocabulary size for non-text tokens (speech, image); special ids are "
                                              "then the project's convention: pad 0, <s> 1, </s> 2")
    p.add_argument("--out", required=True, help="run folder (checkpoints; reruns resume from it)")
    for name in ("steps", "batch", "seq", "context", "warmup", "seed", "eval-every", "eval-windows"):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--save-minutes", type=float)
    p.add_argument("--max-minutes", type=float, help="stop (and save) after this long")
    p.add_argument("--mixed-precision", **MIXED_PRECISION)
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when CUDA is present")
    p.add_argument("--init", help="without a checkpoint in --out: start from this exported model (e.g. a zoo "
                                  "folder) and go on with its schedule from the step in its training_log.json")
    p.add_argument("--export", help="write the last checkpoint to this zoo folder (bf16) instead of training")
    defaults_of(p, LMConfig)


def add_pard_arguments(p: argparse.ArgumentParser):
    from specgen.train.pard import PardConfig

    p.add_argument("--init", required=True, help="the AR draft to adapt (HF folder with its tokenizer)")
    p.add_argument("--train", required=True, help="token files with weights: a.bin:1,b.bin:1")
    p.add_argument("--heldout", required=True)
    p.add_argument("--out", required=True, help="run folder (reruns resume from it)")
    p.add_argument("--k", type=int, help="tokens drafted per forward (groups)")
    p.add_argument("--retention", type=float, help="COD retention r (1 = no dropping)")
    p.add_argument("--floor", type=float, help="COD minimum retention r_min")
    p.add_argument("--teacher", help="the target (HF folder) to distil from: its top-k next-token probabilities "
                                     "join the loss (a trimmed draft then reads target-id .u32 files)")
    p.add_argument("--distill", type=float, help="the teacher's share of the loss (0..1)")
    p.add_argument("--teacher-topk", type=int, help="teacher probabilities kept per position")
    for name in ("steps", "batch", "seq", "warmup", "seed", "eval-every", "eval-windows"):
        p.add_argument(f"--{name}", type=int)
    for name in ("lr", "save-minutes", "max-minutes"):
        p.add_argument(f"--{name}", type=float)
    p.add_argument("--mixed-precision", **MIXED_PRECISION)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--export", help="write the last checkpoint to this zoo folder instead of training")
    defaults_of(p, PardConfig)


def add_heads_arguments(p: argparse.ArgumentParser):
    from specgen.drafters import KINDS
    from specgen.train.heads import HeadsConfig
    from specgen.train.losses import LOSSES

    p.add_argument("--target", required=True, help="the frozen target (HF folder)")
    p.add_argument("--kind", choices=sorted(KINDS))
    p.add_argument("--data", required=True, help="prompts: token files (a.bin:1,b.bin:1; windows of --prompt-len) "
                                                "or a .pt sequence set (its conditioning prefixes)")
    p.add_argument("--out", required=True, help="heads folder (also holds the generated data and checkpoints)")
    p.add_argument("--num-heads", type=int)
    p.add_argument("--init", help="start from this trained heads folder (same kind; Hydra++ sets may grow, "
                                  "see warm_start); a checkpoint in --out still takes precedence")
    p.add_argument("--layers", type=int, help="layers per head (default: the kind's own)")
    p.add_argument("--horizontal", choices=["medusa", "hydra"],
                   help="hawk: the horizontal heads' kind (Medusa blocks as in the paper, or Hydra++ heads)")
    p.add_argument("--width", type=int, help="hawk: tokens per raster row (vertical heads look this far)")
    p.add_argument("--adversarial-weight", type=float,
                   help="koala: weight of the adversarial loss (0 trains the same heads without it)")
    p.add_argument("--sequences", type=int, help="target continuations to train on (with --selfdistill: at most)")
    p.add_argument("--heldout-sequences", type=int, help="of those, kept for calibration")
    p.add_argument("--prompt-len", type=int)
    p.add_argument("--new-tokens", type=int)
    p.add_argument("--temperature", type=float, help="for the target's continuations (0: greedy)")
    for name in ("gen-batch", "steps", "batch"):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--loss", choices=LOSSES,
                   help="distance from the target each head learns to close: kl, tv (total variation, the chance a "
                        "guess drawn from the head is rejected; for drawn guesses) or kl+tv")
    for name in ("warmup", "seed", "eval-every"):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--mixed-precision", **MIXED_PRECISION)
    p.add_argument("--save-dtype", choices=["bfloat16", "float32"],
                   help="how the finished heads are stored (bf16 halves them; loading casts to the target's dtype)")
    p.add_argument("--rules", nargs="+",
                   help="acceptance rules to calibrate trees for beside greedy: sample, tolerance:K")
    add_tree_size_and_guidance(p)
    p.add_argument("--cache-gb", type=float,
                   help="keep the target's hidden states and logits for all training sequences in memory (computed "
                        "once instead of every step) when they fit in this many GiB")
    p.add_argument("--draft-vocab", help="guess among a trimmed vocabulary: a trimmed draft's folder (its config's "
                                         "draft_to_target, e.g. the PARD draft for the same target) or a JSON list "
                                         "of target ids (medusa, koala, hydra)")
    p.add_argument("--selfdistill", help="learn from ready target continuations instead of generating them: flat "
                                         "uint32 token files cut at EOS (a.u32,b.u32; rows shuffled) or a .pt file "
                                         "as train-heads saves; --data is then unused")
    p.add_argument("--cpu", action="store_true")
    defaults_of(p, HeadsConfig)


def add_calibrate_arguments(p: argparse.ArgumentParser):
    from specgen.train.heads import CalibrateConfig

    p.add_argument("--target", required=True, help="the target the heads were trained on (HF folder)")
    p.add_argument("--heads", required=True, help="heads folder; its heads.json gains the tables")
    p.add_argument("--data", required=True, help="prompts: token files or a .pt sequence set (held-out data)")
    p.add_argument("--rules", nargs="+",
                   help="greedy, sample, drawn (sample over children drawn from the heads), tolerance:K")
    p.add_argument("--only-rules", action="store_true",
                   help="write only the --rules tables: keep the greedy table (unless greedy is named) and the rest")
    for name in ("sequences", "new-tokens", "prompt-len"):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--temperature", type=float, help="the continuations' (and `sample`'s) temperature")
    for name in ("gen-batch", "seed"):
        p.add_argument(f"--{name}", type=int)
    add_tree_size_and_guidance(p)
    p.add_argument("--cpu", action="store_true")
    defaults_of(p, CalibrateConfig)


def add_tree_size_and_guidance(p: argparse.ArgumentParser):
    p.add_argument("--cpu-tree-size", type=int,
                   help="store the tree size measured best for these heads on a CPU (heads.json: cpu_tree_size)")
    p.add_argument("--cfg-scale", type=float,
                   help="classifier-free guidance the heads will draft for (1: none): the target's continuations are "
                        "sampled from, and the heads distilled towards, guided logits")
    p.add_argument("--uncond-prompt", type=token_ids,
                   help="with --cfg-scale: the token ids of the unconditioned prompt that replaces each row's own, "
                        "e.g. '1,5,3' (an image model's '<s> <null> <sep>')")


def token_ids(text: str) -> list[int]:
    """'1,5,3' (or '1 5 3') -> [1, 5, 3]."""
    ids = text.replace(",", " ").split()
    if not ids or not all(t.isdigit() for t in ids):
        raise argparse.ArgumentTypeError(f"expected token ids such as 1,5,3, got {text!r}")
    return [int(t) for t in ids]


def add_bench(sub):
    from modalities.text import bench as text_bench

    p = sub.add_parser("bench", help="benchmarks (speed ratios in one run, parity, plots)")
    kinds = p.add_subparsers(dest="kind", required=True)
    t = kinds.add_parser("text", help="text methods beside transformers baselines", description=text_bench.__doc__)
    text_bench.add_arguments(t)
    t.set_defaults(run=text_bench.bench)
    from modalities.speech import bench as speech_bench

    s = kinds.add_parser("speech", help="ar against VADUSA tolerances: speed and quality",
                         description=speech_bench.__doc__)
    speech_bench.add_arguments(s)
    s.set_defaults(run=speech_bench.bench)
    from modalities.image import bench as image_bench

    i = kinds.add_parser("image", help="ar against Hawk variants: speed, adherence, diversity",
                         description=image_bench.__doc__)
    image_bench.add_arguments(i)
    i.set_defaults(run=image_bench.bench)
    from modalities.rap import bench as rap_bench

    r = kinds.add_parser("rap", help="rap token stage: ar against draft heads; alignment and quality",
                         description=rap_bench.__doc__)
    rap_bench.add_arguments(r)
    r.set_defaults(run=rap_bench.bench)


def add_batch(sub):
    from modalities import batch

    p = sub.add_parser("batch", help="one result per job of a JSONL file; resumable, shardable",
                       description=batch.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", required=True)
    t = kinds.add_parser("text", help="text jobs: {\"prompt\": ..., settings...} per line")
    t.add_argument("--model", required=True)
    t.add_argument("--draft")
    t.add_argument("--method", choices=list(METHODS))
    t.add_argument("--input", required=True, help="jobs, one JSON object per line")
    t.add_argument("--out", required=True, help="output folder (rerun to resume)")
    t.add_argument("--shard", help="i/n: this process takes every n-th job starting at i; auto: from the "
                                   "launcher's RANK/WORLD_SIZE (torchrun, accelerate launch) or SLURM_PROCID/NTASKS")
    t.add_argument("--batch-size", type=int, default=1, help="jobs with the same settings decoded together")
    t.add_argument("--max-new-tokens", type=int, default=128, help="default for jobs that do not set it")
    t.add_argument("--temperature", type=float, default=0.0, help="default for jobs that do not set it")
    t.add_argument("--num-draft-tokens", "-k", type=int, default=8)
    t.add_argument("--device")
    t.add_argument("--dtype")
    t.set_defaults(run=run_batch_text)
    for kind, model, fields in (
            ("speech", "models/zoo/speech-tts", "text (required), voice_prompt, method, tolerance, temperature, "
                                                "top_k, seed, max_seconds, vocoder, decoder"),
            ("image", "models/zoo/image-scenes", "prompt (required), cfg_scale, temperature, top_k, method, seed, "
                                                 "samples, acceptance, draws"),
            ("rap", "models/zoo/rap", "lyrics and accompaniment (required), voice_prompt, method, tolerance, "
                                      "draws, temperature, seed, vocoder")):
        m = kinds.add_parser(kind, help=f"{kind} jobs: {{{fields}}} per line")
        m.add_argument("--model", default=model)
        m.add_argument("--input", required=True)
        m.add_argument("--out", required=True)
        m.add_argument("--shard")
        m.add_argument("--device")
        m.add_argument("--dtype")
        m.set_defaults(run=run_batch_media, kind=kind)


def run_batch_text(args):
    from modalities.batch import parse_shard, run_batch
    from modalities.text import TextPipeline
    from modalities.text.batch import TextJobs

    parse_shard(args.shard)  # refuse a bad --shard before loading models
    if args.device is None and args.shard == "auto" and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():  # one GPU per process under a launcher
            args.device = f"cuda:{os.environ['LOCAL_RANK']}"
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    pipe = TextPipeline.from_pretrained(args.model, draft=args.draft, method=args.method, device=args.device,
                                        dtype=args.dtype, num_draft_tokens=args.num_draft_tokens)
    jobs = TextJobs(pipe, {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature})
    counts = run_batch(args.input, args.out, jobs, args.shard, args.batch_size)
    report_counts(counts)


def add_demo(sub):
    from specgen_apps import demo as app

    p = sub.add_parser("demo", help="the Gradio demo app (a tab per modality)", description=app.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    app.add_arguments(p)
    p.set_defaults(run=app.launch)


MEDIA_JOBS = {
    "speech": ("modalities.speech", "SpeechPipeline", ("text", "voice_prompt", "method", "tolerance", "temperature",
                                                       "top_k", "seed", "max_seconds", "vocoder", "decoder"),
               ("text",), "wav"),
    "image": ("modalities.image", "ImagePipeline", ("prompt", "cfg_scale", "temperature", "top_k", "method", "seed",
                                                    "samples", "acceptance", "draws"), ("prompt",), "png"),
    "rap": ("modalities.rap", "RapPipeline", ("lyrics", "accompaniment", "voice_prompt", "method", "tolerance",
                                              "draws", "temperature", "seed", "vocoder"), ("lyrics", "accompaniment"),
            "wav"),
}


def run_batch_media(args):
    import importlib

    from modalities.batch import MediaJobs, parse_shard, run_batch
    from modalities.bench import with_drafting

    parse_shard(args.shard)
    module, cls, fields, required, ext = MEDIA_JOBS[args.kind]
    pipe = getattr(importlib.import_module(module), cls).from_pretrained(args.model, device=args.device,
                                                                         dtype=args.dtype)
    jobs = MediaJobs(pipe, lambda p, **kw: p.generate(**with_drafting(kw)), fields, required, ext)
    counts = run_batch(args.input, args.out, jobs, args.shard)
    report_counts(counts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specgen", description="speculative generation for text, speech, "
                                     "image and rap models")
    sub = parser.add_subparsers(dest="command", required=True)
    add_text(sub)
    add_speech(sub)
    add_image(sub)
    add_rap(sub)
    add_beat(sub)
    add_wer(sub)
    add_training(sub)
    add_bench(sub)
    add_batch(sub)
    add_demo(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ValueError as e:
        print(f"specgen {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
