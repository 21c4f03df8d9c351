"""Gather the COD against no-COD comparison (`bash scripts/train_text_zoo.sh cod`) into one table: per PARD run,
its steps, real and packed training tokens, wall time, held-out loss per token ahead, and the mean accepted
length it reaches on the target (greedy, K = 8, from `specgen bench text --methods pard`).

    python -m modalities.text.cod_compare --runs runs/cod-cmp --bench bench_out/cod --out docs/bench
"""
from __future__ import annotations

import argparse
import json
import os


def accepted(bench_json: str) -> dict[str, float]:
    """Domain -> mean accepted length of the greedy pard K=8 row."""
    with open(bench_json) as f:
        rows = json.load(f)["rows"]
    return {r["group"].split(",")[0]: r["mean_accepted"] for r in rows
            if r["method"] == "pard K=8" and r["group"].endswith("T=0")}


def summarize(runs: dict[str, str], bench: dict[str, str]) -> list[dict]:
    """One row per run: name -> folder of its export (training_log.json) and of its bench (text.json)."""
    rows = []
    for name, export in runs.items():
        path = os.path.join(export, "training_log.json")
        if not os.path.isfile(path):
            raise SystemExit(f"{path} is missing: train and export the run first (bash scripts/train_text_zoo.sh cod)")
        with open(path) as f:
            log = json.load(f)
        last = log["log"][-1] if log["log"] else {}
        acc = accepted(os.path.join(bench[name], "text.json"))
        rows.append({"run": name, "retention": log["args"]["retention"], "floor": log["args"]["floor"],
                     "steps": log["step"], "real_tokens": log["real_tokens"], "packed_tokens": log["tokens"],
                     "minutes": log["seconds"] / 60, "heldout_loss_by_group": last.get("heldout_loss_by_group"),
                     "accepted_code": acc.get("code"), "accepted_prose": acc.get("prose")})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| PARD run | steps | real tokens | packed tokens | minutes | held-out loss, 1 / 2 / 4 / 8 ahead |"
             " accepted K=8, code | prose |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r["heldout_loss_by_group"] or []
        loss = " / ".join(f"{g[i]:.2f}" for i in (0, 1, 3, 7) if i < len(g)) or "—"
        lines.append(f"| {r['run']} | {r['steps']} | {r['real_tokens'] / 1e6:.2f}M | {r['packed_tokens'] / 1e6:.2f}M |"
                     f" {r['minutes']:.1f} | {loss} | {r['accepted_code']} | {r['accepted_prose']} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/cod-cmp", help="one folder per run, each with export/")
    ap.add_argument("--bench", default="bench_out/cod", help="one folder per run, each with text.json")
    ap.add_argument("--extra", nargs="*", default=[], metavar="NAME=EXPORT=BENCH",
                    help="more runs to list, e.g. the shipped draft")
    ap.add_argument("--out", default="docs/bench")
    a = ap.parse_args(argv)
    names = sorted(os.listdir(a.runs)) if os.path.isdir(a.runs) else []
    runs = {n: os.path.join(a.runs, n, "export") for n in names}
    bench = {n: os.path.join(a.bench, n) for n in names}
    for spec in a.extra:
        name, export, folder = spec.split("=")
        runs[name], bench[name] = export, folder
    rows = summarize(runs, bench)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "pard_cod_acceptance.json"), "w") as f:
        json.dump(rows, f, indent=1)
    md = markdown(rows)
    with open(os.path.join(a.out, "pard_cod_acceptance.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
