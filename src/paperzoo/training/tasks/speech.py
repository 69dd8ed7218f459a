"""Speech: wav2vec 2.0's self-supervised pre-training on unlabelled audio (§3.2, eq. 2–4).

The model masks spans of its latent speech representations and learns, by the contrastive loss, to pick each
masked step's true quantised latent among distractors from the same utterance, with the codebook-diversity
penalty keeping every codebook entry in use. The metric is the contrastive accuracy on held-out audio: how often
the true latent scores highest, measured with masks and distractors fixed by the seed (so every evaluation asks
the same questions).

Recipe (§4.2, BASE): Adam with decoupled weight decay 0.01 (fairseq's), the learning rate warmed up over the first
8% of the updates to 5e-4 and then decayed linearly to 0; the Gumbel softmax temperature annealed from 2 to 0.5
by a factor per update. The paper anneals by 0.999995 over 400k updates; a short run compresses that annealing
to its own length (the same temperature at the same fraction of training), as the step schedules of the
classifier recipes do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from paperzoo.registry import TrainingRecipe
from paperzoo.training import audio_data, distributed
from paperzoo.training.tasks import Option, Task, autocast

PAPER_UPDATES = 400_000  # BASE's pre-training length (§4.2), over which the paper's annealing is defined
RECIPE = TrainingRecipe(optimizer="adamw", lr=5e-4, weight_decay=0.01, schedule="linear", batch_size=8,
                        source="Baevski et al. 2020, §4.2: Adam, warm-up over 8% of updates to 5e-4, then linear "
                               "decay (batch 8 utterances here, 1.4M samples per GPU there)")


def collate(examples: Sequence[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Right-pad the waveforms to the longest: ``(waveforms (N, S), attention_mask (N, S), transcripts)``."""
    longest = max(len(w) for w, _ in examples)
    waveforms = torch.zeros(len(examples), longest)
    mask = torch.zeros(len(examples), longest, dtype=torch.long)
    for i, (waveform, _) in enumerate(examples):
        waveforms[i, : len(waveform)] = waveform
        mask[i, : len(waveform)] = 1
    return waveforms, mask, [t for _, t in examples]


class _PreTrainingStep(nn.Module):
    """The pre-training loss per masked step, and how many masked steps the model got right."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor, list[str]]) -> tuple[torch.Tensor, dict, int]:
        waveforms, mask, _ = batch
        out = self.model(waveforms, mask)
        masked = int(out["mask_time_indices"].sum())
        return out["loss"] / masked, {"accuracy": correct(self.model, out)}, masked


def correct(model: nn.Module, out: dict[str, torch.Tensor], negatives: torch.Tensor | None = None) -> torch.Tensor:
    """How many masked steps score their true quantised latent above every distractor (eq. 3's argmax)."""
    from paperzoo.models.audio.wav2vec2 import contrastive_logits, sample_negatives

    mask = out["mask_time_indices"]
    if negatives is None:  # training: fresh distractors, as the loss drew its own
        negatives = sample_negatives(mask, model.num_negatives)
    with torch.no_grad():
        logits = contrastive_logits(out["projected_states"], out["projected_quantized_states"], mask, negatives,
                                    model.contrastive_temperature)
    return (logits.argmax(1) == 0).sum()


class SpeechPreTrainingTask(Task):
    data_kinds = ("spoken-digits", "audio")
    takes_path = ("audio",)
    metric = "accuracy"
    progress_metric = ("accuracy", "acc", ".2%")
    unit = "masked steps"
    options = {
        "utterances": Option(int, 400, "spoken-digits: training utterances made (test: a quarter as many)"),
        "mask_prob": Option(float, 0.065, "p, the probability that a latent step starts a masked span (§4.2)"),
    }

    def prepare(self) -> None:
        config = self.config
        if "pretraining" not in config.model:
            raise ValueError(f"{config.model} is wav2vec 2.0's encoder without a training objective; pre-train "
                             f"{config.model}_pretraining instead")
        self.recipe = RECIPE
        if config.data == "spoken-digits":
            count = self.option_values["utterances"]
            self.train_set = audio_data.spoken_digits("train", count, seed=config.seed)
            self.test_set = audio_data.spoken_digits("test", max(count // 4, 8), seed=config.seed)
        else:
            self.train_set, self.test_set = audio_data.audio_folder(config.data_path, seed=config.seed)

    def model_kwargs(self) -> dict[str, Any]:
        return {"mask_prob": self.option_values["mask_prob"]}

    def collate(self, examples: Sequence[tuple[torch.Tensor, str]]) -> Any:
        return collate(examples)

    def objective(self, model: nn.Module) -> nn.Module:
        return _PreTrainingStep(model)

    def schedules(self, optimizers: list[torch.optim.Optimizer], epochs: int,
                  steps_per_epoch: int) -> list[torch.optim.lr_scheduler.LRScheduler]:
        total = epochs * steps_per_epoch
        warmup = max(1, round(0.08 * total))
        self.total_updates = total

        def factor(step: int) -> float:  # linear warm-up over 8% of the updates, then linear decay to 0
            return (step + 1) / warmup if step < warmup else max(0.0, (total - step) / (total - warmup))

        return [torch.optim.lr_scheduler.LambdaLR(optimizer, factor) for optimizer in optimizers]

    def train_step(self, trained: nn.Module, batch: Any, optimizers: list[torch.optim.Optimizer], scaler: Any,
                   device: torch.device, amp: bool) -> tuple[torch.Tensor, dict[str, Any], int]:
        from paperzoo.models.audio.wav2vec2 import gumbel_temperature

        model = trained.module.model if isinstance(trained, nn.parallel.DistributedDataParallel) else trained.model
        update = optimizers[0].state_dict()["state"].get(0, {}).get("step", 0)
        # the paper's temperature at the same fraction of training: max(2 · 0.999995^u', 0.5), u' = u · 400k / U
        model.quantizer.temperature = gumbel_temperature(int(float(update) * PAPER_UPDATES / self.total_updates))
        return super().train_step(trained, batch, optimizers, scaler, device, amp)

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
                 amp: bool) -> dict[str, float]:
        """The loss per masked step and the contrastive accuracy on held-out audio, with the masks and
        distractors drawn from a generator fixed by the seed: the same questions at every evaluation."""
        from paperzoo.models.audio.wav2vec2 import compute_span_mask, sample_negatives

        model.eval()
        generator = torch.Generator().manual_seed(self.config.seed)
        loss_sum = hits = count = 0.0
        with torch.no_grad(), autocast(device, amp):
            for waveforms, mask, _ in loader:
                waveforms, mask = waveforms.to(device), mask.to(device)
                frames = model.wav2vec2.num_frames(mask.sum(1)).cpu()
                spans = compute_span_mask((len(waveforms), int(model.wav2vec2.num_frames(waveforms.shape[1]))),
                                          mask_prob=self.option_values["mask_prob"], frame_lengths=frames,
                                          generator=generator, device=device)
                negatives = sample_negatives(spans, model.num_negatives, generator=generator)
                out = model(waveforms, mask, mask_time_indices=spans, sampled_negative_indices=negatives)
                loss_sum += out["loss"].float().item()
                hits += correct(model, out, negatives).item()
                count += spans.sum().item()
        loss_sum, hits, count = distributed.all_sum([loss_sum, hits, count], context, device)
        return {"loss": loss_sum / count, "accuracy": hits / count}

    def notes(self) -> list[str]:
        return ["the Gumbel temperature anneals over this run's updates as the paper's over 400k (2 → 0.5)"]


TASK = SpeechPreTrainingTask
