"""The LSTM and GRU as language models: the registered models are recurrent layers (torch.nn.LSTM's and GRU's
interface, feature sequences in, hidden states out), so the task puts them between a token embedding and a
linear read-out, the recurrent language model of Mikolov et al. (2010) and Zaremba et al. (2014):

    ids (N, T) → embedding (N, T, input_size) → LSTM / GRU (N, T, hidden_size) → linear (N, T, vocabulary)

Everything else (the text, its byte-level BPE, windows, perplexity, ``paperzoo generate``) is the language-model
task's. Neither paper gives a recipe for this use, so the loop's default trains it (AdamW, cosine decay), with
gradients clipped to a norm of 5 as Zaremba et al. do, since a recurrent net's gradients can explode (Pascanu et
al. 2013). ``model.safetensors`` holds the whole language model: ``embedding.*``, ``recurrent.*`` (the registered
LSTM or GRU, loadable into it alone) and ``head.*``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.registry import create_model
from paperzoo.training.tasks.language_model import LanguageModelTask

GRADIENT_CLIP = 5.0  # Zaremba et al. 2014, §4


class RecurrentLanguageModel(nn.Module):
    """A token embedding, the registered recurrent layers and a linear read-out: next-token logits per position."""

    def __init__(self, recurrent: nn.Module, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, recurrent.input_size)
        self.recurrent = recurrent
        self.head = nn.Linear(recurrent.hidden_size, vocab_size)
        self.vocab_size = vocab_size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        states, _ = self.recurrent(self.embedding(ids))  # (N, T, hidden_size), batch first
        return self.head(states)  # (N, T, vocab_size)

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        """The mean negative log-likelihood of every token given those before it."""
        logits = self(ids)[:, :-1]  # the logits at t predict token t + 1
        return F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, *, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None, **kwargs: Any) -> torch.Tensor:
        """Continue ``input_ids`` ``(N, T)`` through the shared decoding routine; the recurrent state is the
        cache: each step feeds one token."""
        from paperzoo.layers import decoding

        def step(ids: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
            fed, hidden = state
            states, hidden = self.recurrent(self.embedding(ids[:, fed:]), hidden)
            return F.log_softmax(self.head(states[:, -1]).float(), dim=-1), (ids.shape[1], hidden)

        def reorder(state: Any, rows: torch.Tensor) -> Any:
            fed, hidden = state
            if isinstance(hidden, tuple):
                return fed, tuple(h.index_select(1, rows) for h in hidden)
            return fed, None if hidden is None else hidden.index_select(1, rows)

        return decoding.generate(step, input_ids, (0, None), reorder, max_new_tokens=max_new_tokens,
                                 do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                                 generator=generator, **kwargs)


class SequenceTask(LanguageModelTask):
    recipe_default = None  # the loop's default recipe

    def positions(self) -> int | None:
        return None  # a recurrent net reads any length

    def read(self) -> tuple[str, str, str]:
        if self.config.pretrained:
            raise ValueError(f"{self.config.model} has no published weights: train it without --pretrained")
        return super().read()

    @classmethod
    def rebuild(cls, name: str, settings: dict[str, Any], pretrained: bool | str = False) -> nn.Module:
        return RecurrentLanguageModel(create_model(name, **settings["model_kwargs"]), settings["vocabulary"])

    def gradient_clip(self) -> float | None:
        return GRADIENT_CLIP


TASK = SequenceTask
