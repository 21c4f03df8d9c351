"""Train the byte-level BPE tokenizer shared by the text family, and tokenize the corpus into token files.

    python -m modalities.text.tokenizer --corpus data/text --out models/zoo/text-tokenizer --vocab 8192
    python -m modalities.text.tokenizer --corpus data/text --tokenizer models/zoo/text-tokenizer --encode
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from modalities.documents import read_docs

SPECIALS = ["<pad>", "<s>", "</s>", "<mask>"]  # <mask> is the PARD mask token


def train_tokenizer(corpus: str, out: str, vocab: int = 8192, sample_chars: int = 30_000_000):
    """A byte-level BPE over a sample of the training split; saved in Hugging Face format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    def texts():
        n = 0
        for d in read_docs(os.path.join(corpus, "train.jsonl")):
            yield d["text"]
            n += len(d["text"])
            if n > sample_chars:
                return

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts(), trainer)
    bos = ("<s>", tok.token_to_id("<s>"))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[bos])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   mask_token="<mask>")
    fast.save_pretrained(out)
    return fast


def encode_corpus(corpus: str, tokenizer_path: str):
    """Each split to `{split}.{domain}.bin` (uint16 ids; documents as <s> text </s>) plus a JSON index."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    assert len(tok) < 65536
    index = {}
    for split in ("train", "heldout"):
        for domain in ("code", "prose"):
            docs = [d["text"] for d in read_docs(os.path.join(corpus, f"{split}.jsonl"), domain)]
            ids = tok(docs, add_special_tokens=True)["input_ids"]
            flat = np.fromiter((t for row in ids for t in row + [tok.eos_token_id]), dtype=np.uint16)
            path = os.path.join(corpus, f"{split}.{domain}.bin")
            flat.tofile(path + ".tmp")
            os.replace(path + ".tmp", path)
            index[f"{split}.{domain}"] = {"tokens": int(len(flat)), "docs": len(docs),
                                          "chars_per_token": sum(map(len, docs)) / max(1, len(flat))}
            print(split, domain, index[f"{split}.{domain}"], flush=True)
    with open(os.path.join(corpus, "tokens.json"), "w") as f:
        json.dump({"tokenizer": tokenizer_path, **index}, f, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/text")
    ap.add_argument("--out", default="models/zoo/text-tokenizer")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--tokenizer", help="with --encode: the tokenizer to use (default --out)")
    ap.add_argument("--encode", action="store_true", help="tokenize the corpus instead of training")
    a = ap.parse_args(argv)
    if a.encode:
        encode_corpus(a.corpus, a.tokenizer or a.out)
    else:
        train_tokenizer(a.corpus, a.out, a.vocab)


if __name__ == "__main__":
    main()
