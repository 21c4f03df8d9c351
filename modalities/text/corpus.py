"""Build the text corpus from Debian packages: code (Python stdlib, Linux C) and prose (Webster 1913, KJV Bible,
Python docs, Jargon File), split by document into train and held-out sets, deterministic from a seed.

    python -m modalities.text.corpus --out data/text        # installs nothing; says what to apt-get if missing
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import subprocess
import sysconfig
import tarfile
from pathlib import Path

from modalities.documents import read_docs  # noqa: F401 (read here by the builders of other modalities too)

APT = ("apt-get install -y --no-install-recommends linux-source-6.1 dict-gcide python3.11-doc bible-kjv "
       "bible-kjv-text jargon-text")
LINUX_TAR = "/usr/src/linux-source-6.1.tar.xz"
LINUX_DIRS = ("kernel/", "mm/", "lib/", "fs/ext4/", "fs/proc/", "net/core/", "net/ipv4/", "include/linux/",
              "drivers/char/", "crypto/", "block/", "ipc/", "security/")
GCIDE = "/usr/share/dictd/gcide.dict.dz"
PYDOC = "/usr/share/doc/python3.11/html/_sources"
JARGON = "/usr/share/doc/jargon-text/jargon.txt.gz"


def require(path: str):
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing: install the Debian packages first:\n  {APT}")


def python_stdlib(limit: int):
    root = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if rel.startswith(("test/", "idlelib/", "site-packages/", "lib2to3/tests")) or "/test" in rel:
            continue
        text = f.read_text(encoding="utf-8", errors="replace")
        if 200 < len(text) < 200_000:
            yield rel, text
            total += len(text)
            if total > limit:
                return


def linux_c(limit: int):
    require(LINUX_TAR)
    total = 0
    with tarfile.open(LINUX_TAR, "r:xz") as tar:
        for m in tar:
            name = m.name.split("/", 1)[-1]
            if not m.isfile() or not name.endswith((".c", ".h")) or not name.startswith(LINUX_DIRS):
                continue
            if not 200 < m.size < 200_000:
                continue
            text = tar.extractfile(m).read().decode("utf-8", errors="replace")
            yield name, text
            total += len(text)
            if total > limit:
                return


def gcide(limit: int, per_doc: int = 60):
    """Webster 1913 entries with pronunciation marks and source tags removed; `per_doc` entries a document."""
    require(GCIDE)
    raw = gzip.open(GCIDE, "rt", encoding="utf-8", errors="replace").read()
    entries = []
    for block in raw.split("\n\n"):
        block = re.sub(r"\\[^\\\n]*\\", "", block)  # \Ab*do"men\ pronunciations
        block = re.sub(r"\[(1913 Webster|PJC|Century Dict\.|WordNet 1\.5)[^\]]*\]", "", block)
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        if len(lines) < 2 or lines[0].startswith("00-database"):
            continue
        entries.append(" ".join(lines))
    total = 0
    for i in range(0, len(entries), per_doc):
        text = "\n\n".join(entries[i : i + per_doc])
        yield f"gcide-{i // per_doc}", text
        total += len(text)
        if total > limit:
            return


def bible():
    """The KJV, one chapter a document."""
    try:
        out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"the `bible` command failed ({e}): install the Debian packages first:\n  {APT}") from e
    chapters: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+?)(\d+):(\d+) (.*)$", line)
        if m:
            chapters.setdefault(f"{m[1]}{m[2]}", []).append(f"{m[3]} {m[4]}")
    for key, verses in chapters.items():
        yield f"kjv-{key}", "\n".join(verses)


def python_docs():
    require(PYDOC)
    for f in sorted(Path(PYDOC).rglob("*.txt")):
        text = f.read_text(encoding="utf-8", errors="replace")
        if len(text) > 200:
            yield f.relative_to(PYDOC).as_posix(), text


def jargon(per_doc: int = 40):
    require(JARGON)
    paras = [p.strip() for p in gzip.open(JARGON, "rt", encoding="latin-1").read().split("\n\n") if p.strip()]
    for i in range(0, len(paras), per_doc):
        yield f"jargon-{i // per_doc}", "\n\n".join(paras[i : i + per_doc])


def is_heldout(seed: int, source: str, doc_id: str, percent: float) -> bool:
    h = hashlib.sha256(f"{seed}/{source}/{doc_id}".encode()).digest()
    return int.from_bytes(h[:4], "big") % 10_000 < percent * 100


def build(out: str, seed: int = 0, heldout_percent: float = 2.0, code_mb: float = 30, prose_mb: float = 30):
    sources = [("code", "python", python_stdlib(int(code_mb * 0.5e6))),
               ("code", "linux", linux_c(int(code_mb * 0.5e6))),
               ("prose", "gcide", gcide(int(prose_mb * 0.5e6))),
               ("prose", "kjv", bible()), ("prose", "pydoc", python_docs()), ("prose", "jargon", jargon())]
    os.makedirs(out, exist_ok=True)
    tmp = {s: open(os.path.join(out, f"{s}.jsonl.tmp"), "w", encoding="utf-8") for s in ("train", "heldout")}
    counts: dict[str, int] = {}
    for domain, source, docs in sources:
        for doc_id, text in docs:
            split = "heldout" if is_heldout(seed, source, doc_id, heldout_percent) else "train"
            tmp[split].write(json.dumps({"domain": domain, "source": source, "id": doc_id, "text": text}) + "\n")
            key = f"{split}/{domain}/{source}"
            counts[key] = counts.get(key, 0) + len(text)
        print(f"{domain}/{source}: done", flush=True)
    for s, f in tmp.items():
        f.close()
        os.replace(f.name, os.path.join(out, f"{s}.jsonl"))
    with open(os.path.join(out, "stats.json"), "w") as f:
        json.dump({"seed": seed, "heldout_percent": heldout_percent, "chars": counts}, f, indent=1)
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/text")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heldout-percent", type=float, default=2.0)
    ap.add_argument("--code-mb", type=float, default=30)
    ap.add_argument("--prose-mb", type=float, default=30)
    a = ap.parse_args(argv)
    counts = build(a.out, a.seed, a.heldout_percent, a.code_mb, a.prose_mb)
    for k, v in sorted(counts.items()):
        print(f"{k}: {v / 1e6:.1f} M chars")


if __name__ == "__main__":
    main()
