"""ImagePipeline end to end on tiny random parts: Hawk greedy equals ar greedy with CFG on, images come out,
relaxed acceptance is reported lossy, and captions outside the model's words are refused."""
import pytest

from modalities.image.pipeline import ImagePipeline
from specgen import DraftConfig
from tiny import tiny_image_parts


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    root = tiny_image_parts(tmp_path_factory.mktemp("image"))
    pipe = ImagePipeline.from_pretrained(str(root))
    pipe.root = root
    return pipe


def test_hawk_greedy_equals_ar_greedy_with_guidance(gen):
    kw = dict(cfg_scale=3.0, temperature=0.0)
    ar = gen.generate("a red circle left of a blue square", method="ar", **kw)
    hawk = gen.generate("a red circle left of a blue square", method="hawk", **kw)
    assert hawk.tokens == ar.tokens and len(ar.tokens[0]) == 256
    assert hawk.stats.target_forwards <= ar.stats.target_forwards
    assert ar.image.size == (64, 64)


def test_sampling_draws_the_horizontal_guesses_by_default(gen):
    """draws='auto': drawn guesses when sampling with exact acceptance (the same decode as draws='sample'), Hawk's
    top-k tree otherwise."""
    kw = dict(temperature=1.0, seed=4)
    tree = DraftConfig(tree_size=4)
    default = gen.generate("a small red square", drafting=tree, **kw)
    drawn = gen.generate("a small red square", drafting=DraftConfig(tree_size=4, draws="sample"), **kw)
    assert default.tokens == drawn.tokens
    relaxed = dict(kw, acceptance="relaxed")
    top = gen.generate("a small red square", drafting=DraftConfig(tree_size=4, draws="top"), **relaxed)
    assert gen.generate("a small red square", drafting=tree, **relaxed).tokens == top.tokens


def test_samples_make_a_grid_and_relaxed_acceptance_is_reported(gen, tmp_path):
    res = gen.generate("a large green triangle", samples=2, acceptance="relaxed", seed=3)
    assert res.grid().size == (128, 64) and res.stats.lossless is False
    res.save(str(tmp_path / "grid.png"))
    assert (tmp_path / "grid.png").stat().st_size > 100


def test_unknown_words_and_bad_settings_are_refused(gen):
    with pytest.raises(ValueError, match="does not know the word"):
        gen.generate("a cat on a mat")
    with pytest.raises(ValueError, match="prompt is empty"):
        gen.generate("")
    with pytest.raises(ValueError, match="guidance scale"):
        gen.generate("a red circle", cfg_scale=-1.0)


def test_cli_image_writes_a_png(gen, tmp_path, capsys):
    import json

    from specgen_apps.cli import main

    root = str(gen.root)
    assert main(["image", "--model", root, "--prompt", "a small red circle", "--grid", "2", "--out",
                 str(tmp_path / "x.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 2 and (tmp_path / "x.png").is_file()
    assert main(["image", "--model", root, "--prompt", "a small red circle", "--draws", "sample", "--out",
                 str(tmp_path / "d.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["lossless"] and (tmp_path / "d.png").is_file()
    assert main(["image", "--model", root, "--prompt", "a dog", "--out", str(tmp_path / "y.png")]) == 2
    assert "does not know" in capsys.readouterr().err and not (tmp_path / "y.png").exists()
    assert main(["image", "--model", root, "--heads", str(tmp_path / "nowhere"), "--prompt", "a small red circle",
                 "--out", str(tmp_path / "z.png")]) != 0
    assert "no draft heads at" in capsys.readouterr().err and not (tmp_path / "z.png").exists()
    other = ImagePipeline.from_pretrained(root, heads=str(gen.root / "heads"))  # another folder, same heads here
    assert other.heads.kind == "hawk"


def test_bench_image_runs_every_variant(gen, tmp_path):
    import json

    from specgen_apps.cli import main
    from tiny import random_heads

    out, hydra = tmp_path / "out", tmp_path / "hydra-rows"
    random_heads(gen.lm.model, "hawk:hydra").save(str(hydra))
    assert main(["bench", "image", "--model", str(gen.root), "--captions", "1", "--samples", "2", "--grid-rows",
                 "1", "--heads", str(hydra), "--tree-sizes", "3", "--fp32-drafting", "--split", "train", "--out",
                 str(out)]) == 0
    rows = json.loads((out / "image.json").read_text())["rows"]
    drawn = ["hawk horizontal, drawn guesses", "hawk horizontal+vertical, drawn guesses"]
    hawk = ["hawk horizontal", "hawk horizontal+vertical", *drawn, "hawk + relaxed",
            *[f"{m}, {s}" for m in drawn for s in ("tree 3", "fp32 drafting")]]
    want = ["ar", *[f"{m} (hawk)" for m in hawk], *[f"{m} (hawk hydra-rows)" for m in hawk]]
    assert [r["method"] for r in rows] == want
    assert all(0 <= r["adherence"] <= 1 and r["diversity"] >= 0 for r in rows)
    assert (out / "image-samples.png").is_file()
    assert main(["bench", "image", "--model", str(gen.root), "--captions", "1", "--samples", "1", "--rows", "drawn",
                 "vertical", "--grid-rows", "0", "--out", str(out)]) == 0
    rows = json.loads((out / "image.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["ar", "hawk horizontal+vertical", "hawk horizontal, drawn guesses"]


def test_batch_image_writes_pngs_and_records_bad_jobs(gen, tmp_path):
    import json

    from specgen_apps.cli import main

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([json.dumps({"id": "a", "prompt": "a small red circle", "seed": 1}),
                               json.dumps({"id": "b", "prompt": "a purple dog"}),
                               json.dumps({"id": "c", "caption": "a red circle"})]) + "\n")
    assert main(["batch", "image", "--model", str(gen.root), "--input", str(jobs), "--out",
                 str(tmp_path / "out")]) == 0
    recs = {r["id"]: r for r in map(json.loads, (tmp_path / "out/results.jsonl").read_text().splitlines())}
    assert recs["a"]["status"] == "ok" and (tmp_path / "out/a.png").stat().st_size > 100
    assert recs["b"]["status"] == "error" and "does not know" in recs["b"]["error"]
    assert recs["c"]["status"] == "error" and "unknown field" in recs["c"]["error"]


def test_a_vocabulary_that_does_not_match_the_lm_is_refused(gen):
    from modalities.image.vocab import ImageVocab

    with pytest.raises(ValueError, match="vocabulary has .* ids but the LM predicts"):
        ImagePipeline(gen.lm.model, ImageVocab(codes=31), gen.tokenizer)


def test_adherence_splits_by_attribute_length_and_scale(gen, tmp_path):
    import json

    from modalities.image.adherence import attribute_rates, main

    v = [{"0.color": True, "0.shape": False, "0.size": True, "all": False},
         {"0.color": True, "0.shape": True, "0.size": False, "1.color": False, "1.shape": False, "1.size": False,
          "relation": False, "all": False}]
    r = attribute_rates(v)
    assert r == {"color": 2 / 3, "shape": 1 / 3, "size": 1 / 3, "relation": 0.0, "all": 0.0}
    assert attribute_rates(v[:1])["relation"] is None
    out = tmp_path / "adh"
    main(["--model", str(gen.root), "--captions", "3", "--samples", "1", "--cfg-scales", "1", "3", "--sheet-rows",
          "1", "--out", str(out)])
    rows = json.loads((out / "image-adherence.json").read_text())["rows"]
    sources = [x["source"] for x in rows if x["captions"] == "all"]
    assert sources == ["drawn scene", "VQ reconstruction", "ar, CFG 1", "ar, CFG 3"]
    assert all(x["images"] == 3 for x in rows if x["captions"] == "all")
    assert (out / "image-adherence-cfg3.png").is_file()
