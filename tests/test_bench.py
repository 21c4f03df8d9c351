"""`specgen bench text` runs end to end on tiny models and writes its JSON, markdown table and plot."""
import json

import numpy as np

from specgen_apps.cli import main
from tiny import perturbed, random_heads, tiny_model, tiny_tokenizer


def bench_folder(tmp_path):
    """A tiny target, AR draft, PARD draft, medusa heads and a held-out corpus under tmp_path."""
    tok = tiny_tokenizer(vocab=300)
    target = tiny_model("llama", vocab=len(tok), context=128, layers=3)
    models = {"target": target, "ar": perturbed(target, 0.3), "pard": perturbed(target, 0.3, pard_token=3)}
    for name, m in models.items():
        m.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    random_heads(target, "medusa").save(str(tmp_path / "medusa"))
    rng = np.random.default_rng(0)
    for domain in ("code", "prose"):
        docs = [np.append(rng.integers(4, len(tok), 60), tok.eos_token_id) for _ in range(3)]
        np.concatenate(docs).astype(np.uint16).tofile(tmp_path / f"heldout.{domain}.bin")
    return ["bench", "text", "--model", str(tmp_path / "target"), "--draft", str(tmp_path / "ar"),
            "--pard-draft", str(tmp_path / "pard"), "--heads", str(tmp_path / "medusa"), "--corpus", str(tmp_path),
            "--prompts", "2", "--prompt-len", "16", "--max-new-tokens", "12", "--parity-tokens", "12", "--ks", "4",
            "--temperatures", "0", "--dtype", "float32"]


def test_bench_text_writes_table_json_and_plot(tmp_path):
    out = tmp_path / "out"
    rc = main(bench_folder(tmp_path) + ["--assist-ks", "2", "4", "--out", str(out)])
    assert rc == 0
    rows = json.loads((out / "text.json").read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert {"ar", "hf generate", "hf prompt lookup K=8", "draft_model K=4", "ngram K=4", "pard K=4",
            "medusa"} <= methods
    for group in ("code, T=0", "prose, T=0"):  # only the best swept K is kept
        assert sum(r["method"].startswith("hf assisted") for r in rows if r["group"] == group) == 1
    for r in rows:
        assert r["tokens"] == 2 * 12
        if r["group"].endswith("T=0") and r["method"] in ("ar", "pard K=4", "draft_model K=4", "ngram K=4", "medusa"):
            assert r["parity"] == "2/2"
    assert (out / "text.png").stat().st_size > 1000
    assert "| setting | method |" in (out / "text.md").read_text()
    machine = json.loads((out / "text.json").read_text())["meta"]["machine"]
    assert machine["cpu"] and machine["threads"] >= 1 and machine["cpu_bf16_native"] in (True, False, None)


def test_bench_text_methods_keeps_ar_and_the_named_rows(tmp_path):
    out = tmp_path / "out"
    assert main(bench_folder(tmp_path) + ["--methods", "pard", "medusa", "--out", str(out)]) == 0
    rows = json.loads((out / "text.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"ar", "pard K=4", "medusa"}
    assert all(r["parity"] == "2/2" for r in rows)


def test_bench_text_with_a_trimmed_draft_and_batch_rows(tmp_path):
    """A trimmed-vocabulary draft serves our draft_model and pard rows and transformers' assisted generation (which
    sees it through the target's whole vocabulary), all exact; --batch adds batched rows of our methods."""
    from tiny import trimmed

    args = bench_folder(tmp_path)
    target = tiny_model("llama", vocab=300, context=128, layers=3)  # the same target bench_folder saved
    trimmed(perturbed(target, 0.3), list(range(0, 300, 3)) + [1, 2]).save_pretrained(tmp_path / "trim")
    args[args.index("--draft") + 1] = args[args.index("--pard-draft") + 1] = str(tmp_path / "trim")
    out = tmp_path / "out"
    assert main(args + ["--assist-ks", "4", "--batch", "2", "--out", str(out)]) == 0
    rows = json.loads((out / "text.json").read_text())["rows"]
    by = {(r["group"], r["method"]): r for r in rows}
    for domain in ("code", "prose"):
        for m in ("hf assisted K=4", "draft_model K=4", "pard K=4"):
            assert by[f"{domain}, T=0", m]["parity"] == "2/2", m
        batched = {m for g, m in by if g == f"{domain}, T=0, batch 2"}
        assert {"ar", "pard K=4", "ngram K=4", "draft_model K=4", "medusa"} <= batched
        assert not any(m.startswith("hf") for m in batched)
        assert by[f"{domain}, T=0, batch 2", "pard K=4"]["tokens"] == 2 * 12
