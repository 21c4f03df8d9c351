"""Training recipes: the PARD packed layout computes what inference computes, and one step lowers each loss."""
import numpy as np
import torch
import torch.nn.functional as F

from specgen.train.lm import lr_at
from specgen.train.pard import cod_layout, pard_batch
from tiny import tiny_model

MASK = 3


def test_cod_keeps_about_3_4_L_tokens_for_k8():
    group, pos = cod_layout(256, 8, 0.7, 0.2, np.random.default_rng(0))
    assert 3.2 < len(group) / 256 < 3.5
    full, _ = cod_layout(256, 8, 1.0, 1.0, np.random.default_rng(0))
    assert len(full) == sum(256 - i for i in range(8))  # group i holds positions i..L-1
    kept = {(int(g), int(p)) for g, p in zip(group, pos)}
    assert all((g - 1, p - 1) in kept for g, p in kept if g > 0)  # every kept mask has its predecessor


def test_pard_training_layout_matches_inference():
    """Packed group i at position p gives the logits of a mask at p after real tokens 0..p-i, as in drafting."""
    model = tiny_model("llama", layers=2)
    windows = torch.randint(4, 97, (1, 12))
    group, pos = cod_layout(12, 4, 0.7, 0.2, np.random.default_rng(1))
    inputs, positions, attn, _ = pard_batch(windows, MASK, group, pos)
    with torch.no_grad():
        packed = model(input_ids=inputs, position_ids=positions, attention_mask=attn).logits[0]
        for a in range(len(group)):
            g, p = int(group[a]), int(pos[a])
            seq = windows[0, : p - g + 1].tolist() + [MASK] * g
            ref = model(torch.tensor([seq])).logits[0, -1]
            torch.testing.assert_close(packed[a], ref, atol=1e-4, rtol=1e-4)


def test_one_pard_step_lowers_the_loss():
    torch.manual_seed(0)
    model = tiny_model("llama", layers=2).train()
    windows = torch.randint(4, 40, (4, 32))
    group, pos = cod_layout(32, 4, 0.7, 0.2, np.random.default_rng(0))
    inputs, positions, attn, labels = pard_batch(windows, MASK, group, pos)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss():
        logits = model(input_ids=inputs, position_ids=positions, attention_mask=attn).logits
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    before = loss()
    before.backward()
    opt.step()
    assert loss().item() < before.item()


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    assert lr_at(0, 100, 1.0, 10) == 0.1
    assert lr_at(9, 100, 1.0, 10) == 1.0
    assert abs(lr_at(100, 100, 1.0, 10) - 0.1) < 1e-9


def test_train_lm_resumes_and_pard_adapts_the_export(tmp_path):
    """specgen train-lm (resumable) -> export -> specgen train-pard -> a PARD draft that loads and drafts."""
    import json

    from specgen_apps.cli import main
    from modalities.text import TextPipeline
    from tiny import tiny_tokenizer

    tok = tiny_tokenizer(vocab=300)
    tok.save_pretrained(tmp_path / "tok")
    ids = np.random.default_rng(0).integers(4, len(tok), 5000).astype(np.uint16)
    ids.tofile(tmp_path / "train.bin")
    ids[:500].tofile(tmp_path / "heldout.bin")
    common = ["--train", f"{tmp_path}/train.bin:1", "--heldout", f"{tmp_path}/heldout.bin", "--seq", "32",
              "--batch", "2", "--eval-windows", "2", "--mixed-precision", "no", "--cpu"]
    lm = ["train-lm", "--preset", "draft-5m", "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "run"),
          "--context", "64", *common]
    assert main(lm + ["--steps", "2"]) == 0
    assert main(lm + ["--steps", "3"]) == 0
    state = json.loads((tmp_path / "run/checkpoint/state.json").read_text())
    assert state["step"] == 3 and state["tokens"] == 3 * 2 * 32  # resumed, not restarted
    assert main(lm + ["--export", str(tmp_path / "ar")]) == 0
    again = ["train-lm", "--preset", "draft-5m", "--tokenizer", str(tmp_path / "tok"), "--out",
             str(tmp_path / "run2"), "--context", "64", "--init", str(tmp_path / "ar"), *common]
    assert main(again + ["--steps", "4"]) == 0  # a fresh machine: continue from the export, not from scratch
    assert json.loads((tmp_path / "run2/checkpoint/state.json").read_text())["step"] == 4
    pard = ["train-pard", "--init", str(tmp_path / "ar"), "--out", str(tmp_path / "pard"), "--k", "4", *common]
    assert main(pard + ["--steps", "2"]) == 0
    assert main(pard + ["--export", str(tmp_path / "pard-draft")]) == 0
    pipe = TextPipeline.from_pretrained(str(tmp_path / "ar"), draft=str(tmp_path / "pard-draft"))
    assert pipe.method == "pard"
    out = pipe.generate("def", max_new_tokens=10)
    assert out.token_ids == pipe.generate("def", max_new_tokens=10, method="ar").token_ids


def test_train_lm_on_sequences_learns_only_after_the_prefix(tmp_path):
    """A .pt file of sequences with loss masks (speech, image, rap): labels start at loss_from."""
    from specgen_apps.cli import main
    from specgen.train.data import SequenceSet

    seqs = [{"ids": [1, 5, 6, 7, 3, 20 + i % 5, 21, 22, 2], "loss_from": 5} for i in range(20)]
    torch.save(seqs, tmp_path / "train.pt")
    x, labels, mask = SequenceSet(str(tmp_path / "train.pt")).batch(0, 4)
    assert (labels[:, :5] == -100).all() and (labels[:, 5:] == x[:, 5:]).all() and mask.all()
    assert main(["train-lm", "--preset", "draft-5m", "--vocab", "40", "--train", str(tmp_path / "train.pt"),
                 "--heldout", str(tmp_path / "train.pt"), "--out", str(tmp_path / "run"), "--context", "32",
                 "--steps", "2", "--batch", "2", "--eval-windows", "2", "--mixed-precision", "no", "--cpu"]) == 0
    assert main(["train-lm", "--preset", "draft-5m", "--train", str(tmp_path / "train.pt"), "--heldout",
                 str(tmp_path / "train.pt"), "--out", str(tmp_path / "run"), "--export", str(tmp_path / "lm")]) == 0
    assert (tmp_path / "lm" / "config.json").is_file()


def test_cod_bench_measures_both_layouts(tmp_path):
    import json

    from modalities.text.cod_bench import main as cod_bench
    from tiny import tiny_tokenizer

    tok = tiny_tokenizer(vocab=300)
    model = tiny_model("llama", vocab=len(tok), context=64)
    model.save_pretrained(tmp_path / "draft")
    tok.save_pretrained(tmp_path / "draft")
    np.random.default_rng(0).integers(4, len(tok), 4000).astype(np.uint16).tofile(tmp_path / "train.bin")
    cod_bench(["--init", str(tmp_path / "draft"), "--train", f"{tmp_path}/train.bin:1", "--seq", "32", "--batch",
               "2", "--steps", "2", "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out/pard_cod.json").read_text())
    cod, full = result["rows"].values()
    assert 2.5 < cod["packed_per_real"] < full["packed_per_real"] < 8
    assert result["saving"]["tokens_ratio"] > 1.5


def test_cod_compare_tables_each_run_with_its_losses_and_acceptance(tmp_path):
    import json

    from modalities.text.cod_compare import main as cod_compare

    for name, retention, accepted in (("cod", 0.7, 2.1), ("nocod", 1.0, 1.9)):
        export = tmp_path / "runs" / name / "export"
        export.mkdir(parents=True)
        log = {"step": 60, "tokens": 400_000, "real_tokens": 120_000, "seconds": 600.0,
               "args": {"retention": retention, "floor": 0.2 if retention < 1 else 1.0},
               "log": [{"step": 60, "heldout_loss_by_group": [4.0, 5.0, 5.5, 5.7, 5.8, 5.9, 6.0, 6.1]}]}
        (export / "training_log.json").write_text(json.dumps(log))
        (tmp_path / "bench" / name).mkdir(parents=True)
        rows = [{"group": f"{d}, T=0", "method": m, "mean_accepted": a} for d in ("code", "prose")
                for m, a in (("ar", 1.0), ("pard K=8", accepted))]
        (tmp_path / "bench" / name / "text.json").write_text(json.dumps({"rows": rows}))
    cod_compare(["--runs", str(tmp_path / "runs"), "--bench", str(tmp_path / "bench"), "--out", str(tmp_path)])
    rows = {r["run"]: r for r in json.loads((tmp_path / "pard_cod_acceptance.json").read_text())}
    assert rows["cod"]["accepted_code"] == 2.1 and rows["nocod"]["accepted_prose"] == 1.9
    assert rows["nocod"]["retention"] == 1.0 and rows["cod"]["minutes"] == 10.0
    assert "| cod | 60 | 0.12M | 0.40M | 10.0 | 4.00 / 5.00 / 5.70 / 6.10 | 2.1 | 2.1 |" in \
        (tmp_path / "pard_cod_acceptance.md").read_text()


def test_pard_distils_a_teacher_into_a_trimmed_draft(tmp_path, capsys):
    """train-pard --teacher: a trimmed draft reads target-id .u32 files, learns the teacher's top-k distribution,
    and its held-out top-1 agreement with the teacher rises; without a teacher such files are refused."""
    import json

    from specgen_apps.cli import main
    from tiny import tiny_tokenizer, trimmed

    tok = tiny_tokenizer(vocab=300)
    teacher = tiny_model("llama", vocab=len(tok), context=64, layers=2, seed=0)
    teacher.save_pretrained(tmp_path / "teacher")
    tok.save_pretrained(tmp_path / "teacher")
    keep = list(range(0, len(tok), 2))  # even ids only: the odd ones read as unknown
    trimmed(tiny_model("llama", vocab=len(tok), context=64, layers=2, seed=5), keep).save_pretrained(tmp_path / "d")
    ids = np.random.default_rng(0).integers(4, len(tok), 6000).astype(np.uint32)
    ids.tofile(tmp_path / "train.u32")
    ids[:640].tofile(tmp_path / "heldout.u32")
    run = ["train-pard", "--init", str(tmp_path / "d"), "--out", str(tmp_path / "run"), "--k", "3", "--train",
           f"{tmp_path}/train.u32", "--heldout", f"{tmp_path}/heldout.u32", "--seq", "32", "--batch", "8",
           "--eval-windows", "8", "--lr", "3e-3", "--warmup", "1", "--mixed-precision", "no", "--cpu"]
    assert main(run + ["--steps", "1"]) != 0  # target ids beyond the draft's vocabulary, and no teacher
    assert ".u32" in capsys.readouterr().err
    run += ["--teacher", str(tmp_path / "teacher"), "--distill", "1", "--teacher-topk", "8"]
    assert main(run + ["--steps", "1"]) == 0
    assert main(run + ["--steps", "60", "--eval-every", "60"]) == 0  # resumes at step 1
    log = json.loads((tmp_path / "run/checkpoint/state.json").read_text())["log"]
    first, last = log[0]["heldout_agree_by_group"], log[-1]["heldout_agree_by_group"]
    assert len(first) == 3 and log[-1]["step"] == 60
    assert last[0] > first[0] + 0.15, (first, last)
    assert main(run + ["--steps", "61", "--distill", "1.5"]) != 0
    assert "--distill" in capsys.readouterr().err
