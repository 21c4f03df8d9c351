"""The drafter interface, and what the model-based drafters share: a draft LM fed each row's new tokens."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from ..cached_lm import CachedLM
from ..sampling import Sampling, draw_distinct
from ..tree import DraftTree
from ..vocab_map import VocabMap


class Drafter(ABC):
    """Proposes a draft tree after each row's last emitted token, and follows what the target accepted."""

    name = "drafter"
    forwards = 0  # draft forwards run so far
    needs_hidden = False  # True: the loop passes the target's final hidden states to start and accept
    acceptance = "greedy"  # the batch's acceptance rule; the loop sets it (`configure`) before `start`
    blocked: torch.Tensor | None = None  # [vocab] bool: tokens the target may not say this batch

    def configure(self, acceptance: str, blocked: torch.Tensor | None = None):
        """The decode's acceptance rule and the tokens the target is barred from (`stream`'s `allowed`), for
        drafters that draw from a distribution and should draw what the target can accept."""
        self.acceptance, self.blocked = acceptance, blocked

    def start(self, prompts: list[list[int]], first: list[int], sampling: Sampling, vocab: int,
              device: torch.device, generator: torch.Generator | None = None, hidden: torch.Tensor | None = None):
        """A new batch: the prompts and the first token the target chose for each row (hidden: the target's
        final hidden states over the left-padded prompts [batch, width, dim], for drafters that need them)."""
        self.sampling, self.vocab, self.device, self.generator = sampling, vocab, device, generator

    def check_length(self, total: int):  # noqa: B027 (optional hook: most drafters have no length limit)
        """Refuse sequences longer than the drafter can handle."""

    @abstractmethod
    def propose(self, k: int) -> DraftTree:
        """At most k draft tokens per row, as a tree under each row's last emitted token."""

    @abstractmethod
    def accept(self, emitted: list[list[int]], paths: list[list[int]], hidden: torch.Tensor | None = None):
        """Per row, the tokens emitted this round: the accepted drafts, then the target's next token; `paths` are
        the accepted nodes of the verification tree (root first) and `hidden` its final hidden states
        [batch, nodes, dim] (for drafters that need them)."""

    @abstractmethod
    def select(self, rows: list[int]):
        """Keep only these rows (finished rows leave the batch)."""

    def draw(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Draft tokens from draft logits [batch, k, vocab_d]: argmax when greedy (q None), else drawn from q,
        the draft distribution after the same processing the target gets (q padded to the target's vocabulary)."""
        if self.sampling.greedy:
            return logits.argmax(-1), None
        q = self.sampling.probs(logits)
        tokens = draw_distinct(q, 1, self.generator)[0][..., 0]
        return tokens, F.pad(q, (0, self.vocab - q.shape[-1]))


def ragged(rows: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens [batch, width] and their validity [batch, width] from lists of any lengths."""
    width = max((len(r) for r in rows), default=0)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        valid[i, : len(r)] = True
    return tokens.to(device), valid.to(device)


class ModelDrafter(Drafter):
    """A drafter that runs a small causal LM with its own cache; `pending` holds each row's emitted tokens that
    the draft cache has not seen yet."""

    def __init__(self, model):
        self.lm = CachedLM(model)
        self.vocab_map: VocabMap | None = None  # set at `start` for a draft with a trimmed vocabulary

    def to_draft(self, ids: torch.Tensor) -> torch.Tensor:
        """Target ids as the draft's input ids."""
        return ids if self.vocab_map is None else self.vocab_map.to_draft(ids)

    def draw(self, logits: torch.Tensor):
        """As `Drafter.draw`, after mapping a trimmed draft's logits into the target's vocabulary."""
        return super().draw(logits if self.vocab_map is None else self.vocab_map.to_target(logits))

    @property
    def forwards(self) -> int:
        return self.lm.forwards

    def check_length(self, total: int):
        self.lm.check_length(total)

    def start(self, prompts, first, sampling, vocab, device, generator=None, hidden=None):
        super().start(prompts, first, sampling, vocab, device, generator)
        config = self.lm.model.config
        if self.vocab_map is None or self.vocab_map.target_vocab != vocab:
            self.vocab_map = VocabMap.of(config, self.lm.vocab, vocab, self.lm.device)
        if self.vocab_map is None and self.lm.vocab > vocab:
            raise ValueError(f"the draft's vocabulary ({self.lm.vocab}) is larger than the target's ({vocab}): "
                             f"they do not share a tokenizer; use a draft trained with the target's tokenizer")
        if self.vocab_map is not None:
            prompts = [self.to_draft(torch.tensor(p, device=self.lm.device)).tolist() for p in prompts]
        self.lm.prefill(prompts)
        self.pending = [[t] for t in first]

    def select(self, rows):
        self.lm.select(torch.tensor(rows, dtype=torch.long, device=self.lm.device))
        self.pending = [self.pending[r] for r in rows]
