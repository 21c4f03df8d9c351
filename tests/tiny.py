"""Tiny random models and a tokenizer trained in a second, for tests (fp32, CPU)."""
from __future__ import annotations

import copy

import torch
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

# gemma3 mixes sliding-window and global layers and mistral slides on every layer, both with a window of 8 tokens,
# so the tests' sequences run past it
ARCHS = ("llama", "qwen2", "qwen3", "mistral", "gemma3", "gpt2")
WINDOW = 8


def tiny_model(arch: str = "llama", vocab: int = 97, seed: int = 0, context: int = 128, init: float = 0.02,
               layers: int = 2):
    """A random causal LM small enough to run hundreds of forwards in a second."""
    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=layers, n_head=4, n_positions=context,
                         bos_token_id=0, eos_token_id=0, initializer_range=init)
        return GPT2LMHeadModel(cfg).eval()
    configs = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
               "qwen3": (Qwen3Config, Qwen3ForCausalLM), "mistral": (MistralConfig, MistralForCausalLM),
               "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM)}
    extra = {"sliding_window": WINDOW} if arch == "mistral" else {}
    if arch in ("qwen3", "gemma3"):
        extra["head_dim"] = 8
    if arch == "gemma3":
        extra.update(sliding_window=WINDOW, query_pre_attn_scalar=8,
                     layer_types=["full_attention" if i % 2 else "sliding_attention" for i in range(layers)])
    config_cls, model_cls = configs[arch]
    cfg = config_cls(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0, initializer_range=init, **extra)
    return model_cls(cfg).eval()


def perturbed(model, scale: float, seed: int = 1, pard_token: int | None = None):
    """A copy of `model` with noise on every weight: a draft that agrees with it often but not always."""
    torch.manual_seed(seed)
    draft = copy.deepcopy(model)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(torch.randn_like(p) * scale * p.std().clamp(min=1e-3))
    if pard_token is not None:
        draft.config.pard_token = pard_token
    return draft


def trimmed(model, keep: list[int], pard: bool = True):
    """A draft over a trimmed vocabulary (`keep`: the target ids it predicts, draft ids 0..len-1 in that order,
    then an unknown id and a PARD mask id), made from `model` by keeping those rows of its embeddings and head."""
    draft = copy.deepcopy(model)
    idx = torch.tensor(keep)
    n = len(keep) + 2
    with torch.no_grad():
        emb, head = draft.get_input_embeddings(), draft.get_output_embeddings()
        new_emb = torch.nn.Embedding(n, emb.weight.shape[1])
        new_emb.weight[: len(keep)] = emb.weight[idx]
        new_head = torch.nn.Linear(head.weight.shape[1], n, bias=False)
        new_head.weight[: len(keep)] = head.weight[idx]
    draft.set_input_embeddings(new_emb)
    draft.set_output_embeddings(new_head)
    draft.config.vocab_size = n
    draft.config.draft_to_target, draft.config.draft_unk_token = list(keep), len(keep)
    if pard:
        draft.config.pard_token = len(keep) + 1
    return draft.eval()


def random_heads(target, kind: str = "medusa", num_heads: int = 4, seed: int = 2, scale: float = 0.5,
                 draft_to_target: list[int] | None = None):
    """Untrained heads of a kind on `target`, with random (not zero) weights so they guess varied tokens.
    "hawk:hydra" is Hawk with Hydra++ horizontal heads; `draft_to_target`: guess among those target ids only."""
    from specgen.drafters import KINDS

    torch.manual_seed(seed)
    hidden = target.get_output_embeddings().weight.shape[1]
    kind, _, horizontal = kind.partition(":")
    extra = {"horizontal": horizontal} if horizontal else {}
    if draft_to_target is not None:
        extra["draft_to_target"] = list(draft_to_target)
    heads = KINDS[kind]({"hidden_size": hidden, "num_heads": num_heads, **extra}, target)
    with torch.no_grad():
        for p in heads.parameters():
            p.normal_(0, scale / p.shape[-1] ** 0.5 if p.dim() > 1 else scale)
    return heads.eval()


TEXT = ["def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
        "In the beginning God created the heaven and the earth.",
        "The quick brown fox jumps over the lazy dog. " * 3,
        "for i in range(10):\n    print(i)\n"]


def tiny_tokenizer(vocab: int = 97):
    """A byte-level BPE tokenizer trained on a few lines, with <s>, </s> and a PARD mask token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<s>", "</s>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TEXT * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", mask_token="<mask>")


def tone(seconds: float, f0: float = 180.0, sr: int = 16000):
    """A test tone with a slow tremolo, float32."""
    import numpy as np

    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def tiny_speech_parts(root, vocab_cls, texts, context: int = 512, vocoder: bool = False):
    """An LM over `vocab_cls` (speech or rap vocabulary), random medusa heads, a fitted speech tokenizer, a flow
    decoder, a prompt.wav and (with `vocoder`) a random neural vocoder, saved under `root` in the layout the
    speech and rap pipelines load."""
    from modalities.audio.features import log_mel, save_audio
    from modalities.audio.flow import FlowDecoder
    from modalities.audio.tokenizer import SpeechTokenizer
    from modalities.speech.pipeline import phonemize

    vocab = vocab_cls.from_texts([phonemize(t) for t in texts], 16)
    lm = tiny_model("llama", vocab=len(vocab), context=context, layers=2)
    lm.save_pretrained(root / "lm")
    vocab.save(str(root / "lm"))
    random_heads(lm, "medusa").save(str(root / "heads"))
    mels = [log_mel(torch.from_numpy(tone(1.0, f))) for f in (120, 180, 260)]
    SpeechTokenizer.fit(mels, size=16, iters=5).save(str(root / "tokenizer"))
    torch.manual_seed(0)
    FlowDecoder({"vocab": 16, "dim": 32, "layers": 1, "heads": 2}).save(str(root / "flow"))
    save_audio(str(root / "prompt.wav"), tone(2.5, 180, 22050), 22050)  # another rate: resampled on load
    if vocoder:
        tiny_vocoder().save(str(root / "vocoder"))
    return root


def tiny_vocoder():
    from modalities.audio.vocoder import MelVocoder

    torch.manual_seed(0)
    return MelVocoder({"dim": 16, "hidden": 32, "layers": 1})


def tiny_image_parts(root):
    """An image LM, random Hawk heads and a small VQ tokenizer under `root`, as the image pipeline loads them."""
    from modalities.image.vq import ImageTokenizer
    from modalities.image.vocab import ImageVocab

    vocab = ImageVocab(codes=32)
    lm = tiny_model("llama", vocab=len(vocab), context=300, layers=2)
    lm.save_pretrained(root / "lm")
    vocab.save(str(root / "lm"))
    heads = random_heads(lm, "hawk")
    heads.config["width"] = 16
    heads.save(str(root / "heads"))
    torch.manual_seed(0)
    ImageTokenizer(block_out_channels=(16, 16, 16), num_vq_embeddings=32, norm_num_groups=8).save(str(root / "vq"))
    return root
