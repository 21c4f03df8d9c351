"""Benchmark harness shared by the modality benchmarks: timed runs, aggregation into rows, markdown and a plot.

Speed is compared as ratios taken in one run, methods interleaved prompt by prompt, so drift on a noisy machine
hits every method alike.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field, fields

from specgen import DraftConfig
from specgen.utils import cpu_bf16_native, cpu_info


@dataclass
class Tally:
    """Totals for one (method, group) cell."""

    tokens: int = 0
    seconds: float = 0.0
    accepted: list[float] = field(default_factory=list)
    loop_seconds: float = 0.0
    parity: list[bool] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class Results:
    """Per (group, method) tallies; `rows` turns them into table rows with speedups over a baseline method."""

    def __init__(self, baseline: str = "ar"):
        self.baseline = baseline
        self.cells: dict[tuple[str, str], Tally] = defaultdict(Tally)

    def add(self, group: str, method: str, tokens: int, seconds: float, accepted: float | None = None,
            loop_seconds: float = 0.0):
        t = self.cells[(group, method)]
        t.tokens += tokens
        t.seconds += seconds
        t.loop_seconds += loop_seconds
        if accepted is not None:
            t.accepted.append(accepted)

    def parity(self, group: str, method: str, same: bool):
        self.cells[(group, method)].parity.append(same)

    def rows(self) -> list[dict]:
        out = []
        for (group, method), t in self.cells.items():
            if not t.seconds:
                continue
            base = self.cells.get((group, self.baseline))
            out.append({
                "group": group, "method": method, "tokens": t.tokens, "seconds": round(t.seconds, 3),
                "tokens_per_s": round(t.tokens_per_s, 1),
                "speedup": round(t.tokens_per_s / base.tokens_per_s, 2) if base and base.tokens_per_s else None,
                "mean_accepted": round(sum(t.accepted) / len(t.accepted), 2) if t.accepted else None,
                "loop_share": round(t.loop_seconds / t.seconds, 3) if t.loop_seconds else None,
                "parity": f"{sum(t.parity)}/{len(t.parity)}" if t.parity else None,
            })
        return out


def percent(v: float) -> str:
    return f"{v:.1%}"


# (row key, header, formatter)
COLUMNS = [("group", "setting", str), ("method", "method", str), ("tokens_per_s", "tokens/s", str),
           ("speedup", "speedup vs ar", lambda v: f"{v:.2f}x"), ("mean_accepted", "mean accepted", str),
           ("loop_share", "loop overhead", percent), ("parity", "greedy == ar (fp32)", str)]


def markdown_table(rows: list[dict], columns=COLUMNS) -> str:
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("—" if r.get(k) is None else fmt(r[k]) for k, _, fmt in columns) + " |"
              for r in rows]
    return "\n".join(lines)


def plot_speedups(rows: list[dict], path: str, title: str):
    """Grouped bars: speedup over ar per method, one colour per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({r["group"] for r in rows})
    methods = [m for m in dict.fromkeys(r["method"] for r in rows)]
    width = 0.8 / max(1, len(groups))
    fig, ax = plt.subplots(figsize=(max(6, len(methods) * 0.9), 4))
    for gi, g in enumerate(groups):
        vals = [next((r.get("speedup") or 0 for r in rows if r["group"] == g and r["method"] == m), 0) for m in methods]
        ax.bar([i + gi * width for i in range(len(methods))], vals, width, label=g)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks([i + width * (len(groups) - 1) / 2 for i in range(len(methods))])
    ax.set_xticklabels(methods, rotation=30, ha="right")
    ax.set_ylabel("speedup over ar (tokens/s)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def settings(args) -> dict:
    """The plain-valued command-line settings of a run, for the JSON's meta."""
    return {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, list, type(None)))}


def add_setting_sweeps(p, items: str, varied: str):
    """--split, --tree-sizes, --fp32-drafting and the draft-round options for a media benchmark, the options that
    choose a model's settings: `items` names what it decodes (songs, captions), `varied` the row the extra rows
    vary."""
    p.add_argument("--split", default="heldout", choices=["heldout", "train"],
                   help=f"held-out {items} (the benchmark) or training {items} (for choosing settings)")
    p.add_argument("--tree-sizes", type=int, nargs="*", default=[],
                   help=f"also decode {varied} at these tree sizes (candidate nodes per round)")
    p.add_argument("--fp32-drafting", action="store_true",
                   help=f"also decode {varied} with the heads drafting in fp32 (fp16 on a CPU by default)")
    p.add_argument("--compiled-drafting", action="store_true",
                   help=f"also decode {varied}, at the default tree size and each --tree-sizes, with Hydra++ draft "
                        f"rounds compiled by torch.compile (compiled during the warm-up)")
    add_pytorch_drafting(p, f"{varied}, at the default tree size and each --tree-sizes,")


def add_pytorch_drafting(p, varied: str):
    """--pytorch-drafting: rows whose Hydra++ draft rounds run in eager PyTorch, beside the kernel's (`varied`: which
    rows get such a twin)."""
    p.add_argument("--pytorch-drafting", action="store_true",
                   help=f"also decode {varied} with Hydra++ draft rounds in eager PyTorch instead of specgen's CPU "
                        f"kernel")


def sweep_rows(label: str, kw: dict, args) -> dict[str, dict]:
    """The extra rows those options ask for: '<label>, tree N', '<label>, fp32 drafting', '..., compiled' and
    '..., PyTorch rounds', each `kw` (a pipeline's generate arguments, drafting options loose: `with_drafting`)
    with its setting."""
    import torch

    rows = {f"{label}, tree {n}": {**kw, "tree_size": n} for n in args.tree_sizes}
    if args.fp32_drafting:
        rows[f"{label}, fp32 drafting"] = {**kw, "dtype": torch.float32}
    sized = [(label, kw)] + [(f"{label}, tree {n}", rows[f"{label}, tree {n}"]) for n in args.tree_sizes]
    for flag, suffix, backend in (("compiled_drafting", "compiled", "compile"),
                                  ("pytorch_drafting", "PyTorch rounds", "eager")):
        if getattr(args, flag, False):
            rows.update({f"{name}, {suffix}": {**row, "backend": backend} for name, row in sized})
    return rows


def with_drafting(kw: dict) -> dict:
    """A pipeline's generate arguments with the drafting options among them (the fields of `DraftConfig`:
    tree_size, draws, dtype, backend, vertical) gathered into its one `drafting` argument."""
    names = {f.name for f in fields(DraftConfig)}
    options = {k: v for k, v in kw.items() if k in names}
    rest = {k: v for k, v in kw.items() if k not in names}
    return {**rest, "drafting": DraftConfig(**options)} if options else rest


def machine() -> dict:
    """What a benchmark ran on, kept beside its figures: speedups depend on the processor, bf16 support most."""
    import platform

    import torch

    cpu = cpu_info("model name") or platform.processor() or platform.machine()
    info = {"cpu": cpu, "cpu_bf16_native": cpu_bf16_native(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_outputs(out_dir: str, name: str, rows: list[dict], meta: dict, title: str, columns=COLUMNS) -> str:
    """JSON (rows, settings and the machine), a markdown table and a PNG plot (rows with a speedup); returns the
    markdown."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump({"meta": {**meta, "machine": machine()}, "rows": rows}, f, indent=1)
    md = markdown_table(rows, columns)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write(md + "\n")
    if any(r.get("speedup") for r in rows):
        plot_speedups([r for r in rows if r.get("speedup")], os.path.join(out_dir, f"{name}.png"), title)
    return md


def head_variants(pipe, folders: list[str] | None) -> list[tuple[str, object]]:
    """(label, pipeline) for a pipeline's own heads and for each other heads folder trained on its LM, so head sets
    are compared on one loaded model in one run (a shallow copy per folder; the LM is shared). The label is the
    heads' kind, plus the folder's name where two sets share a kind."""
    import copy

    from specgen.drafters import load_heads

    variants = [(pipe.heads.kind if pipe.heads is not None else "none", pipe)]
    for folder in folders or []:
        other = copy.copy(pipe)
        other.heads = load_heads(folder, pipe.lm.model, narrow=True)
        label = other.heads.kind
        if any(label == seen for seen, _ in variants):
            label += " " + os.path.basename(os.path.normpath(folder))
        variants.append((label, other))
    return variants


def file_label(name: str) -> str:
    """A row name as a file-name part: letters and digits kept, runs of anything else become one '-'."""
    import re

    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def warm_up(decode, methods):
    """`decode(pipe, kw)` once per (pipeline, generate arguments) in `methods`, untimed, before anything is timed.
    First calls allocate, pick kernels and make the heads' drafting copy; on a GPU the first also initialises the
    CUDA libraries, which would otherwise land on whichever method is timed first (on an H100 that halved `ar`'s
    measured rate)."""
    for pipe, kw in methods:
        decode(pipe, kw)


PHASES = ("draft_s", "verify_s", "loop_s")


def add_phases(t: dict, stats):
    """Add one decode's phase seconds and verification forwards to a method's tally (a dict)."""
    for k in PHASES:
        t[k] = t.get(k, 0.0) + getattr(stats, k)
    t["forwards"] = t.get("forwards", 0) + stats.target_forwards


def round_ms(t: dict) -> dict:
    """Milliseconds per verification forward (a round; an `ar` step), by phase, from a tally `add_phases` filled:
    where a round's time goes, for the JSON rows."""
    n = max(t.get("forwards", 0), 1)
    return {k.removesuffix("_s"): 1000 * t.get(k, 0.0) / n for k in PHASES}


def words_judge(enabled: bool, texts: list[str], sample_rate: int):
    """audios -> {"wer": what Whisper base hears against `texts`} ({} when disabled)."""
    if not enabled:
        return lambda audios: {}
    from modalities.audio.recognizer import Recognizer

    rec = Recognizer()
    return lambda audios: {"wer": rec.wer(texts, audios, sample_rate)[0]}
