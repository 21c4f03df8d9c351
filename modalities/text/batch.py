"""Text jobs for `specgen batch text`: {"id"?, "prompt", and any generate() setting} per line; writes
`<id>.json` with the text, token ids and stats."""
from __future__ import annotations

import json

from modalities.batch import Outcome

SETTINGS = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop", "method", "num_draft_tokens",
            "acceptance", "tolerance")


class TextJobs:
    def __init__(self, pipe, defaults: dict):
        self.pipe, self.defaults = pipe, defaults

    def settings(self, spec: dict) -> tuple:
        unknown = set(spec) - {"id", "prompt", *SETTINGS}
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}: a text job takes prompt, id and {list(SETTINGS)}")
        if not isinstance(spec.get("prompt"), str) or not spec["prompt"]:
            raise ValueError("a text job needs a non-empty \"prompt\" string")
        merged = {**self.defaults, **{k: spec[k] for k in SETTINGS if k in spec}}
        if isinstance(merged.get("stop"), list):
            merged["stop"] = tuple(merged["stop"])
        return tuple(sorted(merged.items()))

    def run(self, batch: list[tuple[str, dict]]) -> list[Outcome]:
        settings = dict(self.settings(batch[0][1]))
        if isinstance(settings.get("stop"), tuple):
            settings["stop"] = list(settings["stop"])
        outs = self.pipe.generate([spec["prompt"] for _, spec in batch], **settings)
        outcomes = []
        for (jid, spec), out in zip(batch, outs):
            result = {"id": jid, "prompt": spec["prompt"], **out.as_dict()}
            outcomes.append(Outcome({"status": "ok", "file": f"{jid}.json", "finish_reason": out.finish_reason,
                                     "stats": out.stats.as_dict()},
                                    {f"{jid}.json": json.dumps(result, indent=1).encode()}))
        return outcomes
