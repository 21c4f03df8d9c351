"""The special token ids every token LM here starts its vocabulary with (text tokenizers agree on the first
three)."""
SPECIALS = ["<pad>", "<s>", "</s>", "<sep>", "<mask>"]
PAD, BOS, EOS, SEP, MASK = range(len(SPECIALS))


def save_vocab(path: str, name: str, fields: dict, specials: list[str] = SPECIALS):
    """Write a modality's vocabulary description as `path/name` (JSON, with its special tokens)."""
    import json
    import os

    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "w", encoding="utf-8") as f:
        json.dump({"specials": specials, **fields}, f, ensure_ascii=False, indent=1)


def load_vocab(path: str, name: str) -> dict:
    """Read what save_vocab wrote; a clear error when the folder holds none."""
    import json
    import os

    meta = os.path.join(path, name)
    if not os.path.isfile(meta):
        raise ValueError(f"{path!r} holds no {name.split('_')[0]} vocabulary ({name})")
    with open(meta, encoding="utf-8") as f:
        return json.load(f)
