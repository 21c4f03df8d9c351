"""The special token ids every token LM here starts its vocabulary with (text tokenizers agree on the first
three)."""
SPECIALS = ["<pad>", "<s>", "</s>", "<sep>", "<mask>"]
PAD, BOS, EOS, SEP, MASK = range(len(SPECIALS))
