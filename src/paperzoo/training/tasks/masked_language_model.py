"""BERT's pre-training (§3.1, Appendix A.2): the masked language model and next sentence prediction on the
embedded Genesis text or a plain-text file, with a WordPiece vocabulary trained on that text (or the published
one with ``--pretrained``); metrics: the accuracy on the masked tokens and on IsNext / NotNext, held out.

Each example is ``[CLS] A [SEP] B [SEP]``, B the lines that follow A or, half of the time, lines from elsewhere
(:class:`~paperzoo.training.text_data.SentencePairs`); 15% of its tokens are chosen anew at every step and
replaced by [MASK] 80%, a random token 10%, themselves 10% of the time (:func:`paperzoo.models.language.bert.
mask_tokens`, the paper's procedure; the held-out masks are drawn once from the seed, the same every epoch).

The recipe is Appendix A.2's: Adam with weight decay 0.01, the learning rate warmed up over the first 10,000
steps (here at most a tenth of the run) to 1e-4 and decayed linearly to 0, the loss the sum of the mean
masked-LM and NSP likelihoods (``model.loss``). Deviation: batches of 32 pairs of ``--seq-len`` tokens (the paper:
256 of 512, and 128 tokens for 90% of the steps), so that a small text gives several steps per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from paperzoo.registry import TrainingRecipe, create_model
from paperzoo.training import distributed
from paperzoo.training import text_data as texts
from paperzoo.training.tasks import autocast
from paperzoo.training.tasks.language_model import LanguageModelTask

BERT_RECIPE = TrainingRecipe(
    optimizer="adamw", lr=1e-4, weight_decay=0.01, schedule="linear", batch_size=32,
    source="BERT Appendix A.2: Adam, lr warmed up over 10,000 steps (here at most 10% of the run) to 1e-4, then "
           "decayed linearly; weight decay 0.01 (batch 32 pairs here, 256 in the paper)")


def mask_batch(ids: torch.Tensor, attention_mask: torch.Tensor, special: tuple[int, int, int], mask_id: int,
               vocab_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's masking of a padded batch: ``(inputs, labels)``, labels -100 where nothing is predicted."""
    from paperzoo.models.language.bert import mask_tokens

    return mask_tokens(ids, vocab_size=vocab_size, mask_token_id=mask_id, special_token_ids=special,
                       attention_mask=attention_mask, generator=generator)


class _Step(nn.Module):
    """A batch of pairs, masked here (anew each step, from torch's random state, which the checkpoint keeps);
    returns the paper's loss, the correct NSP decisions and the number of pairs."""

    def __init__(self, model: nn.Module, task: MaskedLanguageModelTask) -> None:
        super().__init__()
        self.model, self.special, self.mask_id, self.vocab = model, task.special, task.mask_id, task.vocabulary

    def forward(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any], int]:
        ids, types, attention, next_labels = batch
        inputs, labels = mask_batch(ids, attention, self.special, self.mask_id, self.vocab)
        out = self.model(inputs, attention, types)
        mlm = nn.functional.cross_entropy(out["mlm_logits"].flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        nsp = nn.functional.cross_entropy(out["nsp_logits"].float(), next_labels)
        correct = (out["nsp_logits"].argmax(-1) == next_labels).sum()
        return mlm + nsp, {"nsp_accuracy": correct}, len(ids)  # the loss of BERTPreTraining.loss (Appendix A.2)


class MaskedLanguageModelTask(LanguageModelTask):
    metric = "mlm_accuracy"
    higher_is_better = True
    progress_metric = ("nsp_accuracy", "nsp", ".1%")
    unit = "pairs"
    recipe_default = BERT_RECIPE
    warmup_steps = 10_000  # Appendix A.2
    decay = "linear"

    def train_tokenizer(self, text: str) -> Any:
        return texts.train_wordpiece(text, self.option_values["vocab_size"])

    def prepare(self) -> None:
        config = self.config
        with torch.device("meta"):
            probe = create_model(config.model)
        if not hasattr(probe, "mlm_head"):
            raise ValueError(f"{config.model} is the encoder without the pre-training heads: train "
                             f"{config.model}_pretraining, which adds the masked-LM and next-sentence heads")
        name, train_text, test_text = self.read()
        seq_len = self.option_values["seq_len"]
        if seq_len > probe.bert.max_positions:
            raise ValueError(f"--seq-len {seq_len} exceeds {config.model}'s {probe.bert.max_positions} positions")
        if seq_len < 8:
            raise ValueError(f"--seq-len {seq_len} is too short for [CLS] A [SEP] B [SEP]: use 8 or more")
        self.text_tokenizer = self.tokenizer(train_text)
        self.vocabulary = self.text_tokenizer.get_vocab_size()
        ids = [self.text_tokenizer.token_to_id(t) for t in texts.BERT_SPECIAL]
        if None in ids:
            missing = [t for t, i in zip(texts.BERT_SPECIAL, ids, strict=True) if i is None]
            raise ValueError(f"the tokenizer has no {', '.join(missing)} token: BERT needs {texts.BERT_SPECIAL}")
        self.pad_id, _, cls_id, sep_id, self.mask_id = ids
        self.special = (self.pad_id, cls_id, sep_id)

        def lines(text: str) -> list[list[int]]:
            return [e.ids for e in self.text_tokenizer.encode_batch([s for s in text.splitlines() if s.strip()],
                                                                    add_special_tokens=False)]

        self.train_set = texts.SentencePairs(lines(train_text), seq_len, cls_id, sep_id, config.seed)
        self.test_set = texts.SentencePairs(lines(test_text), seq_len, cls_id, sep_id, config.seed + 1)
        if len(self.train_set) < 2 or len(self.test_set) < 1:
            raise ValueError(f"text file {name} is too short: its training part makes {len(self.train_set)} and its "
                             f"held-out last tenth {len(self.test_set)} pairs of segments (at least 2 and 1 are "
                             "needed): give a longer text, with more than one line")

    @classmethod
    def size_kwargs(cls, model_kwargs: dict[str, Any]) -> dict[str, Any]:
        if "hidden_size" in model_kwargs and "intermediate_size" not in model_kwargs:
            # The paper's feed-forward is 4H wide (§3): a narrower BERT keeps that ratio, not the card's 3072.
            return {**model_kwargs, "intermediate_size": 4 * model_kwargs["hidden_size"]}
        return dict(model_kwargs)

    def collate(self, examples: Sequence[tuple[torch.Tensor, torch.Tensor, int]]) -> tuple[torch.Tensor, ...]:
        """Pairs padded on the right with [PAD] to the longest: ``(ids, token_type_ids, attention_mask,
        next_sentence_labels)``, the masking left to the step."""
        length = max(len(ids) for ids, _, _ in examples)
        ids = torch.full((len(examples), length), self.pad_id, dtype=torch.int64)
        types = torch.zeros_like(ids)
        attention = torch.zeros_like(ids)
        for row, (example, segments, _) in enumerate(examples):
            ids[row, : len(example)], types[row, : len(example)], attention[row, : len(example)] = example, segments, 1
        return ids, types, attention, torch.tensor([label for _, _, label in examples])

    def objective(self, model: nn.Module) -> nn.Module:
        return _Step(model, self)

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
                 amp: bool) -> dict[str, float]:
        """Held-out loss, masked-token accuracy and NSP accuracy, with masks drawn from the seed (the same every
        epoch)."""
        model.eval()
        loss_sum = masked = masked_correct = pairs = nsp_correct = 0.0
        with torch.no_grad(), autocast(device, amp):
            for index, (ids, types, attention, next_labels) in enumerate(loader):
                generator = torch.Generator(device=device).manual_seed(self.config.seed * 7919 + index
                                                                      + context.rank * 1_000_003)
                ids, types, attention, next_labels = (t.to(device) for t in (ids, types, attention, next_labels))
                inputs, labels = mask_batch(ids, attention, self.special, self.mask_id, self.vocabulary, generator)
                out = model(inputs, attention, types)
                chosen = labels != -100
                logits = out["mlm_logits"][chosen].float()
                loss_sum += nn.functional.cross_entropy(logits, labels[chosen], reduction="sum").item()
                masked += chosen.sum().item()
                masked_correct += (logits.argmax(-1) == labels[chosen]).sum().item()
                pairs += len(ids)
                nsp_correct += (out["nsp_logits"].argmax(-1) == next_labels).sum().item()
        loss_sum, masked, masked_correct, pairs, nsp_correct = distributed.all_sum(
            [loss_sum, masked, masked_correct, pairs, nsp_correct], context, device)
        return {"mlm_loss": loss_sum / masked, "mlm_accuracy": masked_correct / masked,
                "nsp_accuracy": nsp_correct / pairs}


TASK = MaskedLanguageModelTask
