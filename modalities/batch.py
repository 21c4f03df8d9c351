"""`specgen batch <modality>`: one job per JSONL line in, one result file per job plus a results JSONL out.

Resumable: a job whose record is in the results file is not run again, so each job gets exactly one record; a
killed run loses nothing already written, because every file is written under a temporary name and then
renamed, and a record is appended only after its files are in place. A
bad line becomes an error record for that job and the batch goes on. `--shard i/n` takes every n-th job
starting at i, so n processes or machines split one job file; each shard writes its own results file.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field


@dataclass
class Job:
    id: str
    line: int
    spec: dict | None  # None when the line was not a JSON object
    error: str | None = None


@dataclass
class Outcome:
    """What a handler made of one job: the record for the results file and the files to write (name -> bytes)."""

    record: dict
    files: dict[str, bytes] = field(default_factory=dict)


def write_atomic(path: str, data: bytes):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


LAUNCHER_ENV = (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"),
                ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"))


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n', or 'auto': the rank and world size a launcher set (torchrun, accelerate launch, srun, mpirun)."""
    if not text:
        return 0, 1
    if text == "auto":
        for rank, size in LAUNCHER_ENV:
            if rank in os.environ and size in os.environ:
                text = f"{os.environ[rank]}/{os.environ[size]}"
                break
        else:
            raise ValueError("--shard auto found no launcher variables (RANK/WORLD_SIZE, SLURM_PROCID/SLURM_NTASKS): "
                             "start under torchrun, accelerate launch or srun, or give --shard i/n")
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/n with whole numbers, e.g. 0/4; got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


def read_jobs(path: str, shard: tuple[int, int]) -> list[Job]:
    """This shard's jobs; ids come from an "id" field or the line number."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"cannot read the job file {path!r}: {e.strerror}") from e
    jobs, seen = [], set()
    numbered = [(n, ln) for n, ln in enumerate(lines, 1) if ln.strip()]
    for k, (n, ln) in enumerate(numbered):
        if k % shard[1] != shard[0]:
            continue
        try:
            spec = json.loads(ln)
            if not isinstance(spec, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            jobs.append(Job(f"line-{n:06d}", n, None, f"line {n} is not a JSON object: {e}"))
            continue
        jid = str(spec.get("id", f"line-{n:06d}"))
        if not jid or any(c in jid for c in "/\\\0") or jid.startswith("."):
            jobs.append(Job(f"line-{n:06d}", n, None, f"line {n}: id {jid!r} cannot name a file"))
            continue
        if jid in seen:
            jobs.append(Job(f"line-{n:06d}", n, None, f"line {n}: id {jid!r} is used by an earlier line"))
            continue
        seen.add(jid)
        jobs.append(Job(jid, n, spec))
    return jobs


def load_records(path: str) -> dict[str, dict]:
    """Records already in a results file; a line cut short by a killed run is dropped."""
    records = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for ln in f:
                try:
                    rec = json.loads(ln)
                    records[rec["id"]] = rec
                except (ValueError, KeyError, TypeError):
                    continue
    return records


def resume_records(path: str) -> dict[str, dict]:
    """The records of an append-only JSONL file, rewritten without a line a killed run cut short, so that the
    next append starts on a line of its own."""
    records = load_records(path)
    if os.path.isfile(path):
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in records.values()).encode())
    return records


def run_batch(jobs_path: str, out_dir: str, handler, shard: str | None = None, batch_size: int = 1,
              progress: bool = True) -> dict[str, int]:
    """Run every job of this shard not finished yet; returns counts of done, skipped and failed jobs.

    handler.settings(spec) -> a hashable key of the job's settings (jobs decoded together share it; raises
    ValueError for a bad job); handler.run([(job id, spec), ...]) -> one Outcome per job, files named after its id."""
    from tqdm import tqdm

    i, n = parse_shard(shard)
    jobs = read_jobs(jobs_path, (i, n))
    os.makedirs(out_dir, exist_ok=True)
    results = os.path.join(out_dir, "results.jsonl" if n == 1 else f"results.shard{i}of{n}.jsonl")
    records = resume_records(results)
    todo = [j for j in jobs if j.id not in records]
    counts = {"done": 0, "skipped": len(jobs) - len(todo), "failed": 0}
    bar = tqdm(total=len(jobs), initial=counts["skipped"], disable=not progress, desc="jobs")

    def finish(job: Job, outcome: Outcome):
        rec = {"id": job.id, "line": job.line, **outcome.record}
        for name, data in outcome.files.items():
            write_atomic(os.path.join(out_dir, name), data)
        with open(results, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        counts["failed" if rec.get("status") == "error" else "done"] += 1
        bar.update(1)

    def outcomes(batch: list[tuple[str, dict]]) -> list[Outcome]:
        """Run jobs together; when that fails on bad input, run them one by one so only the bad one fails."""
        try:
            return handler.run(batch)
        except ValueError as e:
            if len(batch) == 1:
                return [Outcome({"status": "error", "error": str(e)})]
            return [o for one in batch for o in outcomes([one])]

    group: list[tuple[Job, object]] = []

    def flush():
        for (job, _), outcome in zip(group, outcomes([(j.id, j.spec) for j, _ in group]) if group else []):
            finish(job, outcome)
        group.clear()

    for job in todo:
        if job.error:
            finish(job, Outcome({"status": "error", "error": job.error}))
            continue
        try:
            key = handler.settings(job.spec)
        except ValueError as e:
            finish(job, Outcome({"status": "error", "error": f"line {job.line}: {e}"}))
            continue
        if group and (group[0][1] != key or len(group) >= batch_size):
            flush()
        group.append((job, key))
    flush()
    bar.close()
    return counts



class MediaJobs:
    """Jobs for the speech, image and rap pipelines, one at a time: `call(pipe, **fields)` makes a result whose
    `save(path)` writes the job's file (`<id>.<ext>`); `fields` are the job's line less its id."""

    def __init__(self, pipe, call, fields: tuple[str, ...], required: tuple[str, ...], ext: str):
        self.pipe, self.call, self.fields, self.required, self.ext = pipe, call, fields, required, ext

    def settings(self, spec: dict):
        unknown = set(spec) - {"id", *self.fields}
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}: a job takes id and {list(self.fields)}")
        missing = [f for f in self.required if not spec.get(f)]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        return object()  # never equal to another job's: media jobs run one at a time

    def run(self, batch):
        (jid, spec), = batch
        res = self.call(self.pipe, **{k: v for k, v in spec.items() if k != "id"})
        name = f"{jid}.{self.ext}"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, name)
            res.save(path)
            data = open(path, "rb").read()
        return [Outcome({"status": "ok", "file": name, "stats": res.stats.as_dict()}, {name: data})]
