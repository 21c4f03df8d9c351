"""`specgen batch`: one result per job, resumable after a kill, bad lines recorded, shards disjoint."""
import json

import pytest

from modalities.batch import load_records, run_batch
from specgen_apps.cli import main
from modalities.text import TextPipeline
from modalities.text.batch import TextJobs
from tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    tok = tiny_tokenizer(vocab=300)
    model = tiny_model("llama", vocab=len(tok), context=64)
    model.save_pretrained(root / "m")
    tok.save_pretrained(root / "m")
    return root / "m"


def write_jobs(path):
    lines = [json.dumps({"id": "a", "prompt": "def f"}), json.dumps({"prompt": "for i in", "max_new_tokens": 4}),
             "{not json", json.dumps({"id": "c", "prompt": "The", "colour": "red"}),
             json.dumps({"id": "d", "prompt": "In the beginning"}), json.dumps({"id": "e", "prompt": "x = 1"}),
             json.dumps({"id": "f", "prompt": "import os", "temperature": 0.8, "seed": 3})]
    path.write_text("\n".join(lines) + "\n")
    return ["a", "line-000002", "line-000003", "c", "d", "e", "f"]


class Killed(Exception):
    pass


class DiesAfter(TextJobs):
    """A handler that is 'killed' once it has run `left` batches."""

    def __init__(self, pipe, defaults, left):
        super().__init__(pipe, defaults)
        self.left = left

    def run(self, batch):
        if self.left == 0:
            raise Killed
        self.left -= 1
        return super().run(batch)


def test_batch_resumes_after_a_kill_and_records_each_job_once(model_dir, tmp_path):
    ids = write_jobs(tmp_path / "jobs.jsonl")
    pipe = TextPipeline.from_pretrained(str(model_dir))
    defaults = {"max_new_tokens": 6}
    with pytest.raises(Killed):
        run_batch(str(tmp_path / "jobs.jsonl"), str(tmp_path / "out"), DiesAfter(pipe, defaults, 2), progress=False)
    first = load_records(str(tmp_path / "out/results.jsonl"))
    assert 2 <= len(first) < len(ids)
    counts = run_batch(str(tmp_path / "jobs.jsonl"), str(tmp_path / "out"), TextJobs(pipe, defaults),
                       batch_size=2, progress=False)
    assert counts["skipped"] == len(first)
    lines = (tmp_path / "out/results.jsonl").read_text().splitlines()
    recs = [json.loads(ln) for ln in lines]
    assert sorted(r["id"] for r in recs) == sorted(ids)  # every job exactly once
    by_id = {r["id"]: r for r in recs}
    assert by_id["line-000003"]["status"] == "error" and "not a JSON object" in by_id["line-000003"]["error"]
    assert by_id["c"]["status"] == "error" and "colour" in by_id["c"]["error"]
    for jid in ("a", "line-000002", "d", "e", "f"):
        assert by_id[jid]["status"] == "ok"
        result = json.loads((tmp_path / "out" / f"{jid}.json").read_text())
        assert result["text"] == pipe.decode(result["token_ids"])
    assert by_id["line-000002"]["stats"]["new_tokens"] <= 4
    assert not list((tmp_path / "out").glob("*.tmp*"))
    again = run_batch(str(tmp_path / "jobs.jsonl"), str(tmp_path / "out"), TextJobs(pipe, defaults), progress=False)
    assert again == {"done": 0, "skipped": len(ids), "failed": 0}


def test_shards_split_the_jobs(model_dir, tmp_path):
    ids = write_jobs(tmp_path / "jobs.jsonl")
    for shard in ("0/2", "1/2"):
        assert main(["batch", "text", "--model", str(model_dir), "--input", str(tmp_path / "jobs.jsonl"), "--out",
                     str(tmp_path / "out"), "--shard", shard, "--max-new-tokens", "4"]) == 0
    a = load_records(str(tmp_path / "out/results.shard0of2.jsonl"))
    b = load_records(str(tmp_path / "out/results.shard1of2.jsonl"))
    assert not set(a) & set(b) and sorted(set(a) | set(b)) == sorted(ids)


def test_bad_shard_is_refused(model_dir, tmp_path, capsys):
    (tmp_path / "jobs.jsonl").write_text("{}\n")
    assert main(["batch", "text", "--model", str(model_dir), "--input", str(tmp_path / "jobs.jsonl"), "--out",
                 str(tmp_path / "out"), "--shard", "2/2"]) == 2
    assert "0 <= i < n" in capsys.readouterr().err


def test_shard_auto_reads_the_launcher(monkeypatch):
    from modalities.batch import parse_shard

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert parse_shard("auto") == (3, 8)
    monkeypatch.delenv("RANK")
    with pytest.raises(ValueError, match="no launcher variables"):
        parse_shard("auto")
