"""Reading the text corpus's JSONL documents (the text, speech and rap data builders all read it)."""
from __future__ import annotations

import json
import os


def read_docs(path: str, domain: str | None = None):
    """Documents from a corpus split (.jsonl), optionally one domain ("code" or "prose"). A missing split stops
    with the command that builds it."""
    if not os.path.isfile(path):
        raise SystemExit(f"{path} is missing: build the text corpus first (bash scripts/train_text_zoo.sh corpus)")
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if domain is None or d["domain"] == domain:
                yield d
