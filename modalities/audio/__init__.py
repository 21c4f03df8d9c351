"""What the speech and rap modalities share: audio I/O and features (`features`), the speech tokenizer, flow
matching from tokens to mel frames, the neural vocoder, espeak-ng phonemes and voices, and quality metrics. Their
trained checkpoints ship in models/zoo/."""
