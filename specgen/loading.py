"""Loading Hugging Face causal-LM checkpoints from a local folder, with errors that say what to fix."""
from __future__ import annotations

import os

import torch

from .kernels import narrow_matmuls
from .utils import resolve_device, resolve_dtype


def check_path(path: str, what: str = "model") -> str:
    """A local checkpoint folder that exists, else a ValueError naming the path."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"{what} path {path!r} is not a folder: pass the folder of a Hugging Face checkpoint "
                         f"(config.json plus weights), e.g. one under models/zoo/")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(f"{what} path {path!r} has no config.json: it is not a Hugging Face checkpoint folder")
    return path


def load_causal_lm(path: str, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                   what: str = "model", narrow: bool = False):
    """A causal LM in eval mode on the chosen device and dtype (auto: CUDA with bf16 when present, else CPU fp32).
    narrow: its `nn.Linear` layers compute few rows by specgen's CPU products (`specgen.kernels.narrow_matmuls`;
    CPU fp32 and fp16 models only), which the pipelines ask for."""
    from transformers import AutoModelForCausalLM

    path = check_path(path, what)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"could not load the {what} at {path!r} as a causal LM: {e}") from e
    model = model.to(dev).eval()
    return narrow_matmuls(model) if narrow else model


def load_tokenizer(path: str, what: str = "model"):
    """The tokenizer saved beside a checkpoint."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(check_path(path, what))
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"the {what} at {path!r} has no usable tokenizer ({e}): save one beside the weights with "
                         f"tokenizer.save_pretrained(path)") from e


def load_lm_and_heads(folder: str, device=None, dtype=None, what: str = "LM", heads: str | None = None,
                      narrow: bool = False):
    """A model folder's `lm/` (a causal LM) and, when present, its `heads/` (draft heads trained on that LM);
    `heads` names another heads folder to load instead (e.g. the zoo's `heads-medusa/`); `narrow` as in
    `load_causal_lm`, for both."""
    from .drafters import load_heads

    lm = load_causal_lm(os.path.join(folder, "lm"), device, dtype, what=what, narrow=narrow)
    if heads is not None:
        if not os.path.isfile(os.path.join(heads, "heads.json")):
            raise ValueError(f"no draft heads at {heads} (no heads.json there): pass a heads folder such as "
                             f"{os.path.join(folder, 'heads')}")
        return lm, load_heads(heads, lm, narrow)
    heads_dir = os.path.join(folder, "heads")
    found = load_heads(heads_dir, lm, narrow) if os.path.isfile(os.path.join(heads_dir, "heads.json")) else None
    return lm, found


def part_path(folder: str, name: str, required: bool = True) -> str | None:
    """Where a model folder's part `name` (tokenizer, flow, vocoder, ...) lies: `<folder>/<name>`, or where the
    folder's `shared.json` points (a path relative to the folder), so that two models can share one copy of a
    part. None for a missing optional part (also when shared.json points at a folder that is not there); a clear
    error for a missing required one."""
    own = os.path.join(folder, name)
    if os.path.isdir(own):
        return own
    shared = os.path.join(folder, "shared.json")
    if os.path.isfile(shared):
        import json

        try:
            with open(shared, encoding="utf-8") as f:
                mapping = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {shared}: {e}; it should map part names to folders, e.g. "
                             f'{{"flow": "../speech-tts/flow"}}') from e
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ValueError(f"{shared} should map part names to folder paths, e.g. "
                             f'{{"flow": "../speech-tts/flow"}}')
        target = mapping.get(name)
        if target is not None:
            path = os.path.normpath(os.path.join(folder, target))
            if os.path.isdir(path):
                return path
            if required:
                raise ValueError(f"{shared} says the {name} part is at {path}, which does not exist: keep the "
                                 f"model folders side by side as shipped, or copy the part into {own}")
    if required:
        raise ValueError(f"{folder} has no {name}/ part: point --model at a complete model folder")
    return None


def check_vocabulary(vocab_size: int, lm_vocab: int, what: str):
    """A token layout (speech, image, rap vocabulary) must match the LM it feeds."""
    if vocab_size != lm_vocab:
        raise ValueError(f"the {what} vocabulary has {vocab_size} ids but the LM predicts {lm_vocab}: they were not "
                         f"trained together; load the LM and the vocabulary from one model folder")


def storage_tensors(state: dict, dtype: torch.dtype | None = None) -> dict:
    """A state dict made ready for safetensors: detached, contiguous, on the CPU, and floating tensors in `dtype`
    when one is given (bf16 halves a checkpoint; loading casts back)."""
    out = {}
    for k, v in state.items():
        v = v.detach().cpu()
        out[k] = (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
    return out
