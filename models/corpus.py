"""Reading the text corpus's JSONL documents (the text, speech and rap data builders all read it)."""
from __future__ import annotations

import json


def read_docs(path: str, domain: str | None = None):
    """Documents from a corpus split (.jsonl), optionally one domain ("code" or "prose")."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if domain is None or d["domain"] == domain:
                yield d
