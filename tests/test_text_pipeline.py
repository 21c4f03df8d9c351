"""TextPipeline and `specgen text`: the user-facing API over the core, on a tiny saved model family."""
import json

import pytest

from specgen_apps.cli import main
from modalities.text import TextPipeline
from tiny import perturbed, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("family")
    tok = tiny_tokenizer(vocab=300)
    target = tiny_model("llama", vocab=len(tok), context=64, layers=3)
    for name, model in {"target": target, "pard": perturbed(target, 0.3, pard_token=tok.mask_token_id),
                        "plain": perturbed(target, 0.3)}.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


@pytest.fixture(scope="module")
def pipe(family):
    return TextPipeline.from_pretrained(str(family / "target"), draft=str(family / "pard"))


def test_pipeline_defaults_to_pard_and_matches_ar(pipe):
    assert pipe.method == "pard"
    out = pipe.generate("def fib(n):", max_new_tokens=20)
    ref = pipe.generate("def fib(n):", max_new_tokens=20, method="ar")
    assert out.token_ids == ref.token_ids and out.text == ref.text
    assert out.stats.new_tokens == 20 and out.stats.tokens_per_s > 0
    assert out.stats.target_forwards <= ref.stats.target_forwards


def test_pipeline_batch_gives_one_result_per_prompt(pipe):
    prompts = ["a", "for i in range(10):", "In the beginning God created"]
    outs = pipe.generate(prompts, max_new_tokens=12)
    assert len(outs) == 3
    for p, o in zip(prompts, outs):
        assert o.token_ids == pipe.generate(p, max_new_tokens=12, method="ar").token_ids


def test_stream_yields_the_generated_text(pipe):
    chunks = list(pipe.stream("The quick brown", max_new_tokens=24))
    assert len(chunks) > 1
    assert "".join(chunks) == pipe.last.text == pipe.generate("The quick brown", max_new_tokens=24).text


def test_stop_string_cuts_the_text_before_it(pipe):
    full = pipe.generate("for i in", max_new_tokens=30, method="ar").text
    stop = full[10:13]
    start = full.find(stop)
    for method in ("ar", "pard", "ngram"):
        out = pipe.generate("for i in", max_new_tokens=30, stop=[stop], method=method)
        assert out.finish_reason == "stop"
        assert out.text == full[:start]
    streamed = "".join(pipe.stream("for i in", max_new_tokens=30, stop=stop))
    assert streamed == full[:start]


def test_sampling_with_a_seed_is_reproducible(pipe):
    a = pipe.generate("def", max_new_tokens=16, temperature=1.0, top_p=0.9, seed=7)
    b = pipe.generate("def", max_new_tokens=16, temperature=1.0, top_p=0.9, seed=7)
    assert a.token_ids == b.token_ids


def test_cli_json_prints_one_object_per_prompt(family, capsys):
    rc = main(["text", "--model", str(family / "target"), "--draft", str(family / "pard"), "--method", "pard",
               "--prompt", "def f", "--prompt", "In the", "--max-new-tokens", "8", "--json", "--compare-ar"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        rec = json.loads(line)
        assert set(rec) >= {"text", "token_ids", "stats", "speedup_over_ar"}
        assert set(rec["stats"]) >= {"new_tokens", "wall_s", "tokens_per_s", "mean_accepted", "target_forwards",
                                     "draft_forwards"}
        assert 1 <= rec["stats"]["new_tokens"] <= 8 and len(rec["token_ids"]) == rec["stats"]["new_tokens"]


def test_cli_prompts_file(family, tmp_path, capsys):
    f = tmp_path / "prompts.jsonl"
    f.write_text(json.dumps({"prompt": "def g(x):\n"}) + "\n" + json.dumps({"prompt": "The"}) + "\n")
    assert main(["text", "--model", str(family / "target"), "--prompts-file", str(f), "--max-new-tokens", "4",
                 "--json", "--batch-size", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_cli_reports_bad_input_without_a_traceback(family, capsys):
    rc = main(["text", "--model", str(family / "missing"), "--prompt", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "not a folder" in err and "Traceback" not in err
