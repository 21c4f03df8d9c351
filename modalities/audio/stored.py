"""One way to keep a small audio network on disk: `<name>.safetensors` (weights, optionally in a smaller float
type; loading casts back to float32) beside `<name>.json` (the config its constructor takes)."""
from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class StoredModule(nn.Module):
    stem = "module"  # file names
    what = "model"  # for the error when a folder holds none

    def save(self, path: str, dtype: torch.dtype | None = None):
        from specgen.loading import storage_tensors

        os.makedirs(path, exist_ok=True)
        save_file(storage_tensors(self.state_dict(), dtype), os.path.join(path, f"{self.stem}.safetensors"))
        with open(os.path.join(path, f"{self.stem}.json"), "w") as f:
            json.dump(self.config, f, indent=1)

    @classmethod
    def load(cls, path: str):
        meta = os.path.join(path, f"{cls.stem}.json")
        if not os.path.isfile(meta):
            raise ValueError(f"{path!r} holds no {cls.what} ({cls.stem}.json)")
        with open(meta, encoding="utf-8") as f:
            model = cls(json.load(f))
        model.load_state_dict(load_file(os.path.join(path, f"{cls.stem}.safetensors")))
        return model.eval()
