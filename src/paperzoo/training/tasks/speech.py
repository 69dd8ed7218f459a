"""Speech: wav2vec 2.0's self-supervised pre-training on unlabelled audio (§3.2, eq. 2–4), and its fine-tuning
for speech recognition with CTC (§3.3) on transcribed audio.

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

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
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
        "max_words": Option(int, 3, "spoken-digits: each utterance says 1 to this many digits (1: single words, "
                                    "the easiest start for CTC)"),
        "mask_prob": Option(float, 0.065, "p, the probability that a latent step starts a masked span (§4.2)",
                            inclusive=True),
    }

    def prepare(self) -> None:
        config = self.config
        if "pretraining" not in config.model:
            raise ValueError(f"{config.model} is wav2vec 2.0's encoder without a training objective; pre-train "
                             f"{config.model}_pretraining instead")
        self.recipe = RECIPE
        self.load_audio()

    def load_audio(self) -> None:
        """The spoken digits (a quarter as many test utterances, from the held-out voices) or the audio folder."""
        if self.config.data == "spoken-digits":
            count = self.option_values["utterances"]
            words = self.option_values["max_words"]
            self.train_set = audio_data.spoken_digits("train", count, seed=self.config.seed, max_words=words)
            self.test_set = audio_data.spoken_digits("test", max(count // 4, 8), seed=self.config.seed,
                                                     max_words=words)
        else:
            self.train_set, self.test_set = audio_data.audio_folder(self.config.data_path, seed=self.config.seed)

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


BLANK = "<blank>"
WORD_BOUNDARY = "|"  # between words, as the paper's character vocabulary and transformers' tokenizer
FINE_TUNING = TrainingRecipe(optimizer="adamw", lr=1e-4, weight_decay=0.0, schedule="linear", batch_size=8,
                             source="Baevski et al. 2020, §4.3 and Appendix B: Adam with a tri-state schedule (10% "
                                    "warm-up, 40% constant, 50% linear decay) peaking at 5e-5 to 1e-4")


class _CTCStep(nn.Module):
    """The CTC loss per utterance (the word error rate needs decoding: it is measured on the test set)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict, int]:
        waveforms, mask, labels = batch
        loss = self.model(waveforms, mask, labels=labels)["loss"]
        return loss / len(waveforms), {}, len(waveforms)


def greedy_ctc(logits: torch.Tensor, frames: torch.Tensor, blank_id: int = 0) -> list[list[int]]:
    """Best-path decoding: the most likely class per frame, repeats merged, blanks dropped (Graves et al. 2006)."""
    paths = []
    for best, length in zip(logits.argmax(-1).tolist(), frames.tolist(), strict=True):
        path = torch.unique_consecutive(torch.tensor(best[:length])).tolist()
        paths.append([c for c in path if c != blank_id])
    return paths


class SpeechTask(SpeechPreTrainingTask):
    """Pre-training for the ``*_pretraining`` variants, CTC fine-tuning for the ``*_ctc`` ones."""

    options = {
        **SpeechPreTrainingTask.options,
        "encoder": Option(str, None, "CTC: start the encoder from a pre-training run's model.safetensors (the "
                          "paper's fine-tuning; the convolutional feature encoder is then frozen, §4.3)"),
    }

    def __init__(self, config: Any, card: Any) -> None:
        super().__init__(config, card)
        self.ctc = card.name.endswith("_ctc")
        if self.ctc:
            self.metric, self.higher_is_better, self.progress_metric, self.unit = "wer", False, None, "utterances"

    def prepare(self) -> None:
        config = self.config
        if not self.ctc:
            if self.option_values["encoder"] is not None:
                raise ValueError("--encoder starts a CTC model (wav2vec2_base_ctc) from a pre-training run")
            return super().prepare()
        if not config.model.endswith("_ctc"):
            raise ValueError(f"{config.model} has no CTC head")
        try:
            import jiwer  # noqa: F401  (the word error rate)
        except ImportError:
            raise ValueError("the word error rate needs jiwer: pip install 'paperzoo[train]'") from None
        self.recipe = FINE_TUNING
        self.load_audio()
        if config.data != "spoken-digits":
            untranscribed = [i for i, t in enumerate(self.train_set.transcripts) if not t]
            if untranscribed:
                first = self.train_set.files[untranscribed[0]]
                raise ValueError(f"CTC fine-tuning needs a transcript beside every audio file (name.txt); "
                                 f"{len(untranscribed)} training files have none, e.g. {first} has no "
                                 f"{first.with_suffix('.txt').name}")
        letters = sorted(set("".join(self.train_set.transcripts)) - {" "})
        self.vocabulary = [BLANK, WORD_BOUNDARY, *letters]
        for name, dataset in (("training", self.train_set), ("test", self.test_set)):
            for i, transcript in enumerate(dataset.transcripts):
                unknown = set(transcript) - set(letters) - {" "}
                if unknown:
                    where = (f"{dataset.files[i].with_suffix('.txt')}: the {name} transcript" if dataset.files
                             else f"the {name} transcript {i}")
                    raise ValueError(f"{where} {transcript!r} has characters outside the vocabulary of the training "
                                     f"transcripts: {''.join(sorted(unknown))!r} (CTC can only emit characters "
                                     "that the training transcripts hold)")
        encoder = self.option_values["encoder"]
        if encoder is not None and not Path(encoder).is_file():
            raise ValueError(f"--encoder {encoder} does not exist (a pre-training run's model.safetensors)")

    def model_kwargs(self) -> dict[str, Any]:
        if not self.ctc:
            return super().model_kwargs()
        return {"mask_prob": self.option_values["mask_prob"], "vocab_size": len(self.vocabulary), "blank_id": 0}

    def build_model(self) -> nn.Module:
        model = super().build_model()
        encoder = self.option_values["encoder"] if self.ctc else None
        if encoder is not None:  # the pre-trained encoder; the CTC layer starts from scratch (§3.3)
            from safetensors.torch import load_file

            weights = {k: v for k, v in load_file(encoder).items() if k.startswith("wav2vec2.")}
            missing, _ = model.load_state_dict(weights, strict=False)
            if any(k.startswith("wav2vec2.") for k in missing):
                raise ValueError(f"--encoder {encoder} does not fit {self.config.model}{self.config.model_kwargs or ''}"
                                 " (pass the same --model-kwargs as the pre-training run)")
            model.freeze_feature_encoder()
        return model

    def encode_transcript(self, transcript: str) -> list[int]:
        index = {c: i for i, c in enumerate(self.vocabulary)}
        return [index[WORD_BOUNDARY if c == " " else c] for c in transcript]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocabulary[i] for i in ids).replace(WORD_BOUNDARY, " ").strip()

    def collate(self, examples: Sequence[tuple[torch.Tensor, str]]) -> Any:
        waveforms, mask, transcripts = collate(examples)
        if not self.ctc:
            return waveforms, mask, transcripts
        ids = [self.encode_transcript(t) for t in transcripts]
        labels = torch.full((len(ids), max(len(i) for i in ids)), -100, dtype=torch.long)  # transformers' padding
        for row, sequence in enumerate(ids):
            labels[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        return waveforms, mask, labels

    def objective(self, model: nn.Module) -> nn.Module:
        return _CTCStep(model) if self.ctc else super().objective(model)

    def schedules(self, optimizers: list[torch.optim.Optimizer], epochs: int,
                  steps_per_epoch: int) -> list[torch.optim.lr_scheduler.LRScheduler]:
        if not self.ctc:
            return super().schedules(optimizers, epochs, steps_per_epoch)
        total = epochs * steps_per_epoch
        warmup, hold = max(1, round(0.1 * total)), round(0.4 * total)

        def factor(step: int) -> float:  # the tri-state schedule: 10% warm-up, 40% constant, 50% linear decay
            if step < warmup:
                return (step + 1) / warmup
            if step < warmup + hold:
                return 1.0
            return max(0.0, (total - step) / max(total - warmup - hold, 1))

        return [torch.optim.lr_scheduler.LambdaLR(optimizer, factor) for optimizer in optimizers]

    def train_step(self, trained: nn.Module, batch: Any, optimizers: list[torch.optim.Optimizer], scaler: Any,
                   device: torch.device, amp: bool) -> tuple[torch.Tensor, dict[str, Any], int]:
        if self.ctc:
            return Task.train_step(self, trained, batch, optimizers, scaler, device, amp)
        return super().train_step(trained, batch, optimizers, scaler, device, amp)

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
                 amp: bool) -> dict[str, float]:
        if not self.ctc:
            return super().evaluate(model, loader, device, context, amp)
        import jiwer

        model.eval()
        references, hypotheses, loss_sum = [], [], 0.0
        with torch.no_grad(), autocast(device, amp):
            for waveforms, mask, labels in loader:
                waveforms, mask, labels = waveforms.to(device), mask.to(device), labels.to(device)
                out = model(waveforms, mask, labels=labels)
                loss_sum += out["loss"].float().item()
                frames = model.wav2vec2.num_frames(mask.sum(1)).cpu()
                hypotheses += [self.decode(ids) for ids in greedy_ctc(out["logits"].float().cpu(), frames)]
                references += [self.decode([i for i in row if i != -100]) for row in labels.tolist()]
        # The word error rate over the whole test set: (substitutions + deletions + insertions) / reference words.
        measures = jiwer.process_words(references, [h or "" for h in hypotheses])
        errors = measures.substitutions + measures.deletions + measures.insertions
        words = sum(len(r.split()) for r in references)
        loss_sum, errors, words, count = distributed.all_sum([loss_sum, errors, words, len(references)], context,
                                                             device)
        return {"loss": loss_sum / count, "wer": errors / words}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary} if self.ctc else {}

    def inference(self) -> dict[str, Any] | None:
        # paperzoo transcribe --checkpoint (and from_pretrained): the model and the characters its outputs are
        return {"model_kwargs": self.built_kwargs(), "vocabulary": self.vocabulary} if self.ctc else None

    def notes(self) -> list[str]:
        if self.ctc:
            return [] if self.option_values["encoder"] else [
                "no --encoder: the CTC model trains from random weights, not from a pre-trained encoder (§3.3)"]
        return super().notes()


TASK = SpeechTask


# --- transcribing: paperzoo transcribe ------------------------------------------------------------------------

def load_transcriber(name: str, checkpoint: str | Path | None = None,
                     pretrained: bool | str | None = None) -> tuple[nn.Module, list[str], str]:
    """A CTC model, its vocabulary (the string of each class; the blank is ``model.blank_id``) and how its
    training normalised the audio (``"run"`` or ``"published"``): from a ``paperzoo train`` run, or the published
    weights with the vocabulary file of their Hub repository."""
    from paperzoo.registry import create_model, model_card

    card = model_card(name)
    if card.task != "speech" or not name.endswith("_ctc"):
        raise ValueError(f"{name} has no CTC head to transcribe with; paperzoo transcribe takes "
                         "wav2vec2_base_ctc and wav2vec2_large_ctc")
    if (checkpoint is None) == (pretrained is None):
        raise ValueError("give --checkpoint RUN (a paperzoo train run of the CTC model) or --pretrained (the "
                         "published weights)")
    if checkpoint is not None:
        from paperzoo.training.checkpoints import load_trained

        model, inference = load_trained(checkpoint, name)
        return model, list(inference["vocabulary"]), "run"
    from paperzoo.weights import get_weights
    from paperzoo.weights.download import _from_hub

    weights = get_weights(name, pretrained)
    tokens = json.loads(_from_hub(weights.hub_repo, "vocab.json").read_text(encoding="utf-8"))  # {token: id}
    model = create_model(name, pretrained=pretrained).eval()
    vocabulary = [""] * model.vocab_size
    for token, index in tokens.items():
        if 0 <= index < len(vocabulary):
            vocabulary[index] = token
    return model, vocabulary, "published"


def transcribe(model: nn.Module, vocabulary: Sequence[str], waveform: torch.Tensor, normalisation: str) -> str:
    """The greedy CTC transcript of one 16 kHz mono waveform ``(samples,)``, normalised as the model's training
    audio was: a run's as :class:`~paperzoo.training.audio_data.Utterances` (the unbiased standard deviation);
    the published models' as transformers' feature extractor (``do_normalize``: the population variance)."""
    audio = waveform.float()
    if normalisation == "run":
        audio = audio_data.normalise(audio)
    else:
        audio = (audio - audio.mean()) / torch.sqrt(audio.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        logits = model(audio[None])["logits"][0].float()
    best = logits[: int(model.wav2vec2.num_frames(len(audio)))].argmax(-1).tolist()
    # As transformers' speech recognition pipeline decodes (skip_special_tokens): the sentence markers and the
    # unknown token are dropped first, then repeats merged and blanks dropped (greedy_ctc's best path otherwise)
    kept = [i for i in best if vocabulary[i] not in ("<s>", "</s>", "<unk>")]
    text = "".join(vocabulary[i] for i, _ in itertools.groupby(kept) if i != model.blank_id)
    return " ".join(text.replace(WORD_BOUNDARY, " ").split())
