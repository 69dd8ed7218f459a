"""Translation: the Transformer, Seq2Seq and RNNsearch on sentence pairs, each with its paper's recipe; metric:
BLEU (sacrebleu) of beam-search translations of held-out pairs.

Data: the embedded English → German numerals (:func:`~paperzoo.training.translation_data.number_pairs`), or
``--data parallel PATH`` with PATH either a folder holding ``train.src`` and ``train.tgt`` (and optionally
``valid.src`` and ``valid.tgt``, the held-out pairs) or two aligned files written ``SOURCE:TARGET``. Without
valid files, a fixed 5% of the pairs (at most 1,000) is held out.

The recipes (:data:`RECIPES`), scaled to a short run:

* the Transformer (§5.3, §5.4): Adam β₁ = 0.9, β₂ = 0.98, ε = 10⁻⁹ at lr = d_model^−0.5 · min(step^−0.5,
  step · warmup^−1.5) (eq. 3; ``--lr`` multiplies it, 1 being the paper's), label smoothing ε_ls = 0.1;
  warm-up 4,000 steps, or 10% of a shorter run (the paper's is 4% of 100,000 steps; a short run needs longer);
  the small Transformer's rate is eq. 3's × 0.3;
* Seq2Seq (§3.4): plain SGD at 0.7, halved every half epoch after the fifth of 7.5 epochs (the run is cut at the
  same fractions), batches of 128, the gradient's norm clipped at 5;
* RNNsearch (appendix B.2): Adadelta (ρ = 0.95, ε = 10⁻⁶), batches of 80, the gradient's norm clipped at 1.

Deviations: the batches hold sentences, not the Transformer's 25,000 tokens (64 sentences by default); the loss
is the mean over target tokens (Seq2Seq's paper divides the summed gradient by the 128 sentences); no sentence
bucketing by length. ``--size small`` (the default on the embedded data) trains a narrow, shallow copy of each
architecture (:data:`SMALL`) so that a run takes minutes on a laptop's CPU; ``--size paper`` keeps the card's
dimensions, with the vocabulary sizes of your data.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from paperzoo.registry import TrainingRecipe, create_model, model_module
from paperzoo.training import distributed
from paperzoo.training import translation_data as td
from paperzoo.training.tasks import Option, Task, autocast


@dataclass(frozen=True)
class TranslationRecipe(TrainingRecipe):
    """A translation paper's recipe: the optimizers and schedules the image recipes do not have."""

    betas: tuple[float, float] = (0.9, 0.999)  # Adam
    rho: float = 0.9  # Adadelta's decay
    clip_norm: float | None = None  # the gradient's largest L2 norm
    warmup_steps: int = 0  # the Transformer's eq. 3
    beam_size: int = 4  # the paper's beam for the held-out translations

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd", "adadelta") or self.schedule not in (
                "inverse-sqrt", "halving", "constant"):
            raise ValueError(f"unknown optimizer {self.optimizer!r} or schedule {self.schedule!r}")


RECIPES: dict[str, TranslationRecipe] = {
    "transformer": TranslationRecipe(
        optimizer="adam", lr=1.0, weight_decay=0.0, betas=(0.9, 0.98), eps=1e-9, schedule="inverse-sqrt",
        warmup_steps=4000, batch_size=64, beam_size=4,
        source="§5.3-5.4, §6.1: Adam β2 = 0.98, ε = 1e-9, eq. 3's warm-up (lr multiplies it), label smoothing "
               "0.1, beam 4 with length penalty 0.6"),
    "seq2seq": TranslationRecipe(
        optimizer="sgd", lr=0.7, weight_decay=0.0, schedule="halving", batch_size=128, clip_norm=5.0, beam_size=12,
        source="§3.4: SGD at 0.7, halved every half epoch after 5 of 7.5 epochs, batches of 128, gradient norm "
               "clipped at 5; §3.2 beam 12"),
    "attention_seq2seq": TranslationRecipe(
        optimizer="adadelta", lr=1.0, weight_decay=0.0, rho=0.95, eps=1e-6, schedule="constant", batch_size=80,
        clip_norm=1.0, beam_size=12,
        source="appendix B.2: Adadelta (ρ = 0.95, ε = 1e-6), batches of 80, gradient norm clipped at 1; beam "
               "search (12 beams, the model's default)"),
}

# --size small: each architecture narrowed and made shallow, the ideas kept (the Transformer's post-norm layers
# and shared embedding, Seq2Seq's deep LSTMs and reversed source, RNNsearch's bidirectional encoder, alignment
# model and maxout readout).
SMALL: dict[str, dict[str, Any]] = {
    "transformer": {"d_model": 64, "num_heads": 4, "d_ff": 256, "num_encoder_layers": 2, "num_decoder_layers": 2},
    "seq2seq": {"embedding_dim": 64, "hidden_size": 128, "num_layers": 2},
    "attention_seq2seq": {"embedding_dim": 32, "hidden_size": 64, "alignment_size": 64, "maxout_size": 32},
}

# The model classes of the task "translation", by the paper (file) whose recipe trains them.
FAMILIES = {"Transformer": "transformer", "Seq2Seq": "seq2seq", "RNNsearch": "attention_seq2seq"}

HELD_OUT_FRACTION, MOST_HELD_OUT = 0.05, 1000
NUMBERS_TEST = 300  # held-out numerals of the embedded data


class PairDataset(Dataset):
    """Encoded sentence pairs: example i is ``(source ids + </s>, <s> + target ids + </s>, i)``."""

    def __init__(self, pairs: Sequence[tuple[list[int], list[int]]]) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[list[int], list[int], int]:
        source, target = self.pairs[index]
        return source + [td.EOS_ID], [td.BOS_ID, *target, td.EOS_ID], index


def pad(rows: Sequence[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), td.PAD_ID, dtype=torch.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.int64)
    return out


class _Step(nn.Module):
    """Teacher forcing: a batch ``(source, source lengths, target, indices)`` → (the paper's loss per target
    token, ``{"accuracy": correct next tokens}``, target tokens). The decoder reads ``<s> y₁ … yₙ`` and predicts
    ``y₁ … yₙ </s>``; padding is ignored. The Transformer's loss is label-smoothed (ε_ls from the model)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any], int]:
        src, lengths, tgt, _ = batch
        if is_transformer(self.model):
            logits = self.model(src, tgt[:, :-1])  # padding is masked by its id
        else:
            logits = self.model(src, tgt[:, :-1], src_lengths=lengths)
        logits, expected = logits.float(), tgt[:, 1:]
        loss = F.cross_entropy(logits.flatten(0, 1), expected.flatten(), ignore_index=td.PAD_ID,
                               label_smoothing=getattr(self.model, "label_smoothing", 0.0))
        real = expected != td.PAD_ID
        correct = ((logits.argmax(-1) == expected) & real).sum()
        return loss, {"accuracy": correct}, int(real.sum())


class TranslationTask(Task):
    data_kinds = ("numbers", "parallel")
    takes_path = ("parallel",)
    metric = "bleu"
    progress_metric = ("accuracy", "acc", ".2%")
    unit = "tokens"
    not_shardable = ("its evaluation decodes each process's sentences for as many steps as they need, and a sharded "
                     "model needs every process in each step")
    options = {
        "vocab": Option(str, None, "translation: one vocabulary for both languages or one each (default: the "
                        "model's, shared for the Transformer, separate for Seq2Seq and RNNsearch)",
                        ("shared", "separate")),
        "tokenizer": Option(str, "word", "translation: whole words, or byte-pair subwords (tokenizers library)",
                            ("word", "bpe")),
        "bpe_size": Option(int, 8000, "translation: the most tokens of a BPE vocabulary"),
        "max_length": Option(int, 100, "translation: the most tokens of a sentence; a longer one is refused"),
        "size": Option(str, None, "translation: small (narrow and shallow) or the paper's dimensions (default: "
                       "small on the embedded data, paper on yours)", ("small", "paper")),
        "max_train_pairs": Option(int, None, "translation: train on the first N pairs only (a shorter run; "
                                  "default: all)"),
        "optimizer": Option(str, "paper", "translation: the paper's optimizer and schedule, or Adam at a constant "
                            "3e-3 (with the paper's gradient clipping): far fewer steps for Seq2Seq and RNNsearch, "
                            "whose papers trained for days", ("paper", "adam")),
        "beam_size": Option(int, None, "translation: beams for the held-out BLEU (default: the paper's)"),
        "warmup_steps": Option(int, None, "the Transformer's warm-up steps (default: 4000, or 10%% of a shorter "
                               "run)"),
    }

    def prepare(self) -> None:
        config, values = self.config, self.option_values
        self.family = model_module(config.model).rsplit(".", 1)[-1]  # the paper's file: its recipe
        if self.family not in RECIPES:
            raise ValueError(f"paperzoo train has no translation recipe for {config.model} yet (it trains "
                             f"{', '.join(RECIPES)})")
        self.recipe = RECIPES[self.family]
        if values["optimizer"] == "adam":
            self.recipe = dataclasses.replace(self.recipe, optimizer="adam", lr=3e-3, betas=(0.9, 0.999), eps=1e-8,
                                              schedule="constant", source="--optimizer adam: Adam at 3e-3, "
                                              "constant, with the paper's gradient clipping and beam")
        shared = values["vocab"] or ("shared" if self.family == "transformer" else "separate")
        if self.family == "transformer" and shared == "separate":
            raise ValueError("--vocab separate does not apply to the Transformer: its one embedding matrix serves "
                             "both languages and the output (§3.4); use --vocab shared")
        self.size = values["size"] or ("small" if config.data == "numbers" else "paper")
        if config.data == "numbers":
            pairs = td.number_pairs()
            order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0)).tolist()
            train = [pairs[i] for i in order[NUMBERS_TEST:]]
            test = [pairs[i] for i in order[:NUMBERS_TEST]]
            train_where = test_where = None
        else:
            train, test, train_where, test_where = read_corpus(config.data_path)
        if values["max_train_pairs"] is not None:
            train = train[:values["max_train_pairs"]]
            train_where = train_where and train_where[:values["max_train_pairs"]]
        kind, size = values["tokenizer"], values["bpe_size"]
        if shared == "shared":
            self.source_vocab = self.target_vocab = td.Vocabulary.build(
                [s for pair in train for s in pair], kind, size)
        else:
            self.source_vocab = td.Vocabulary.build([s for s, _ in train], kind, size)
            self.target_vocab = td.Vocabulary.build([t for _, t in train], kind, size)
        self.shared = shared
        self.train_set = PairDataset(self.encode(train, train_where))
        self.test_set = PairDataset(self.encode(test, test_where))
        self.references = [t for _, t in test]
        self.samples: list[tuple[str, str, str]] = []

    def encode(self, pairs: list[tuple[str, str]],
               where: list[tuple[Path, Path, int]] | None) -> list[tuple[list[int], list[int]]]:
        """The pairs as ids; a sentence longer than ``--max-length`` tokens is refused, naming its file and line."""
        longest, encoded = self.option_values["max_length"], []
        for i, (source, target) in enumerate(pairs):
            ids = self.source_vocab.encode(source), self.target_vocab.encode(target)
            for side, sentence in enumerate(ids):
                if len(sentence) > longest:
                    place = f"{where[i][side]} line {where[i][2]}" if where else f"pair {i + 1}"
                    raise ValueError(f"{place} has {len(sentence)} tokens, more than --max-length {longest}: split "
                                     "the sentence, remove the pair from both files, or raise --max-length")
            encoded.append(ids)
        return encoded

    def model_kwargs(self) -> dict[str, Any]:
        kwargs = dict(SMALL[self.family]) if self.size == "small" else {}
        if self.family == "transformer":
            return {**kwargs, "vocab_size": len(self.source_vocab), "bos_id": td.BOS_ID, "pad_id": td.PAD_ID,
                    "eos_id": td.EOS_ID}
        return {**kwargs, "vocab_size": len(self.source_vocab), "target_vocab_size": len(self.target_vocab),
                "bos_id": td.BOS_ID, "eos_id": td.EOS_ID}

    def build_model(self) -> nn.Module:
        model = super().build_model()
        self.d_model = getattr(model, "d_model", None)  # eq. 3's scale
        return model

    def settings(self) -> dict[str, Any]:
        return {**self.option_values, "vocab": self.shared, "size": self.size}

    def collate(self, examples: Sequence[tuple[list[int], list[int], int]]) -> tuple[torch.Tensor, ...]:
        sources, targets, indices = zip(*examples, strict=True)
        return (pad(sources), torch.tensor([len(s) for s in sources]), pad(targets), torch.tensor(indices))

    # --- the recipe ----------------------------------------------------------------------------------------------

    def optimizers(self, model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
        recipe = self.recipe
        if recipe.optimizer == "adam":
            return [torch.optim.Adam(model.parameters(), lr=lr, betas=recipe.betas, eps=recipe.eps)]
        if recipe.optimizer == "adadelta":
            return [torch.optim.Adadelta(model.parameters(), lr=lr, rho=recipe.rho, eps=recipe.eps)]
        return [torch.optim.SGD(model.parameters(), lr=lr)]

    def schedules(self, optimizers: list[torch.optim.Optimizer], epochs: int,
                  steps_per_epoch: int) -> list[torch.optim.lr_scheduler.LRScheduler]:
        total = epochs * steps_per_epoch
        if self.recipe.schedule == "inverse-sqrt":
            d_model = self.d_model
            warmup = self.warmup_steps(total)

            def factor(k: int) -> float:  # eq. 3, before optimizer step k + 1 (the paper counts from 1)
                return d_model ** -0.5 * min((k + 1) ** -0.5, (k + 1) * warmup ** -1.5)
        elif self.recipe.schedule == "halving":
            def factor(k: int) -> float:  # the paper's epoch e ∈ [0, 7.5): halved at 5, 5.5, 6, ...
                paper_epoch = 7.5 * k / total
                return 1.0 if paper_epoch < 5 else 0.5 ** (math.floor((paper_epoch - 5) / 0.5) + 1)
        else:
            def factor(k: int) -> float:
                return 1.0
        return [torch.optim.lr_scheduler.LambdaLR(optimizer, factor) for optimizer in optimizers]

    def warmup_steps(self, total: int) -> int:
        return self.option_values["warmup_steps"] or min(self.recipe.warmup_steps, max(1, round(0.1 * total)))

    @property
    def lr(self) -> float:
        # Eq. 3 ties the peak rate to d_model^-0.5: the small Transformer (d_model 64) would peak nearly 3x higher
        # than the base model (512) after a 10x shorter warm-up; 0.3 keeps its accuracy from oscillating.
        scale = 0.3 if self.recipe.schedule == "inverse-sqrt" and self.size == "small" else 1.0
        return self.config.lr or self.recipe.lr * scale

    def gradient_clip(self) -> float | None:
        return getattr(self.recipe, "clip_norm", None)  # Seq2Seq's 5 (§3.4), RNNsearch's 1 (Appendix B.2)

    def objective(self, model: nn.Module) -> nn.Module:
        return _Step(model)

    # --- evaluation -----------------------------------------------------------------------------------------------

    @property
    def beam_size(self) -> int:
        return self.option_values["beam_size"] or self.recipe.beam_size

    def translate(self, model: nn.Module, src: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return translate_ids(model, src, lengths, self.target_vocab, self.beam_size)

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
                 amp: bool) -> dict[str, float]:
        """Teacher-forced loss and token accuracy, and the corpus BLEU (sacrebleu's, its 13a tokenisation) and
        exact-match rate of beam-search translations, all summed over every process's share."""
        bleu = _bleu()
        model.eval()
        step = _Step(model)
        totals = [0.0] * 5  # loss, correct tokens, tokens, exact translations, sentences
        stats = [0.0] * 10  # 4 matching n-gram counts, 4 n-gram totals, hypothesis and reference lengths
        self.samples = []
        with torch.no_grad():
            for batch in loader:
                batch = tuple(t.to(device) for t in batch)
                with autocast(device, amp):
                    loss, sums, count = step(batch)
                totals[0] += loss.item() * count
                totals[1] += float(sums["accuracy"])
                totals[2] += count
                src, lengths, _, indices = batch
                for index, hypothesis in zip(indices.tolist(), self.translate(model, src, lengths), strict=True):
                    reference = self.references[index]
                    score = bleu.sentence_score(hypothesis, [reference])
                    for k in range(4):
                        stats[k] += score.counts[k]
                        stats[4 + k] += score.totals[k]
                    stats[8] += score.sys_len
                    stats[9] += score.ref_len
                    totals[3] += hypothesis == reference
                    totals[4] += 1
                    if len(self.samples) < 20:
                        self.samples.append((loader.dataset.pairs[index], reference, hypothesis))
        values = distributed.all_sum(totals[:5] + stats, context, device)
        loss_sum, correct, tokens, exact, sentences = values[:5]
        counts, ngrams, sys_len, ref_len = values[5:9], values[9:13], values[13], values[14]
        score = type(bleu).compute_bleu([int(c) for c in counts], [int(n) for n in ngrams], int(sys_len),
                                        int(ref_len), smooth_method="exp")  # sacrebleu's corpus default
        return {"loss": loss_sum / tokens, "accuracy": correct / tokens, "bleu": score.score,
                "exact_match": exact / sentences}

    # --- what the run folder keeps ----------------------------------------------------------------------------

    def translation_config(self) -> dict[str, Any]:
        """What ``paperzoo translate`` needs besides the weights: the model's shape and the vocabularies."""
        return {"model": self.config.model, "model_kwargs": self.build_kwargs(), "beam_size": self.beam_size,
                "shared": self.shared, "source": self.source_vocab.to_dict(),
                **({} if self.shared == "shared" else {"target": self.target_vocab.to_dict()})}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"translation": self.translation_config()}

    def after_epoch(self, model: nn.Module, out: Path, epoch: int) -> list[str]:
        (out / "translation.json").write_text(json.dumps(self.translation_config(), ensure_ascii=False),
                                              encoding="utf-8")
        lines = [f"epoch {epoch}: held-out sentences, source → reference | translation"]
        for (source_ids, _), reference, hypothesis in self.samples:
            mark = "=" if hypothesis == reference else "≠"
            lines.append(f"{self.source_vocab.decode(source_ids)} → {reference} {mark} {hypothesis}")
        (out / "translations.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return ["translation.json", "translations.txt"]

    def outputs(self) -> list[str]:
        return ["translation.json", "translations.txt"]


def is_transformer(model: nn.Module) -> bool:
    """The Transformer masks the source's padding by its id; the recurrent models take the source lengths."""
    return FAMILIES.get(type(model).__name__) == "transformer"


def _bleu() -> Any:
    try:
        from sacrebleu.metrics import BLEU
    except ImportError as err:
        raise ImportError("BLEU is computed with sacrebleu: pip install 'paperzoo[train]'") from err
    return BLEU(effective_order=True)  # only the sentence scores use it; their counts are the same


def translate_ids(model: nn.Module, src: torch.Tensor, lengths: torch.Tensor, target_vocab: td.Vocabulary,
                  beam_size: int) -> list[str]:
    """Beam-search translations of a padded source batch (ids ending in ``</s>``), as target sentences."""
    if is_transformer(model):
        out = model.generate(src, num_beams=beam_size)
    else:
        out = model.generate(src, num_beams=beam_size, src_lengths=lengths)
    return [target_vocab.decode(row) for row in out[:, 1:].tolist()]


def load_translator(run: str | Path, model_name: str) -> tuple[nn.Module, td.Vocabulary, td.Vocabulary, int]:
    """A trained translation model from a ``paperzoo train`` run folder (or its ``checkpoint.pt``): the model in
    eval mode, its source and target vocabularies and its beam size, read from ``translation.json`` and the
    weights (``model.safetensors`` of a finished run, else the last checkpoint, loaded with weights_only)."""
    folder = Path(run)
    folder = folder.parent if folder.is_file() else folder
    described = folder / "translation.json"
    if not described.is_file():
        raise ValueError(f"{folder} holds no translation.json: --checkpoint takes the output folder of "
                         f"`paperzoo train {model_name}` (runs/{model_name} by default)")
    saved = json.loads(described.read_text(encoding="utf-8"))
    if saved["model"] != model_name:
        raise ValueError(f"{folder} trained {saved['model']}, not {model_name}: "
                         f"`paperzoo translate {saved['model']} --checkpoint {folder} ...`")
    model = create_model(model_name, **saved["model_kwargs"])
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        weights = load_file(str(folder / "model.safetensors"))
    else:
        from paperzoo.training import checkpoints

        weights = checkpoints.load_checkpoint(folder / "checkpoint.pt", model_name)["model"]
    model.load_state_dict(weights)
    source = td.Vocabulary.from_dict(saved["source"])
    target = source if saved["shared"] == "shared" else td.Vocabulary.from_dict(saved["target"])
    return model.eval(), source, target, saved["beam_size"]


def translate_sentences(model: nn.Module, source_vocab: td.Vocabulary, target_vocab: td.Vocabulary,
                        sentences: Sequence[str], beam_size: int) -> list[str]:
    """Translate sentences with a model from :func:`load_translator`; an empty one is a ``ValueError``."""
    encoded = []
    for number, sentence in enumerate(sentences, 1):
        ids = source_vocab.encode(sentence)
        if not ids:
            raise ValueError(f"sentence {number} is empty: give the text to translate, e.g. \"forty two\"")
        encoded.append(ids + [td.EOS_ID])
    with torch.no_grad():
        return translate_ids(model, pad(encoded), torch.tensor([len(ids) for ids in encoded]), target_vocab,
                             beam_size)


def unknown_words(vocabulary: td.Vocabulary, sentence: str) -> list[str]:
    """The words of ``sentence`` a word vocabulary does not know (they are read as <unk>)."""
    return [] if vocabulary.kind != "word" else [w for w in sentence.split() if w not in vocabulary.index]


def read_corpus(path: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]],
                                    list[tuple[Path, Path, int]], list[tuple[Path, Path, int]]]:
    """``--data parallel PATH``: the train and held-out pairs and where each comes from (files, line)."""
    folder = Path(path)
    if folder.is_dir():
        files = {name: folder / name for name in ("train.src", "train.tgt", "valid.src", "valid.tgt")}
        for name in ("train.src", "train.tgt"):
            if not files[name].is_file():
                raise ValueError(f"{folder} has no {name}: a parallel corpus folder holds train.src and train.tgt "
                                 "(and optionally valid.src and valid.tgt), one sentence a line")
        if files["valid.src"].is_file() != files["valid.tgt"].is_file():
            have, lacks = ("valid.src", "valid.tgt") if files["valid.src"].is_file() else ("valid.tgt", "valid.src")
            raise ValueError(f"{folder} has {have} but no {lacks}: give both held-out files or neither")
        train = td.read_parallel(files["train.src"], files["train.tgt"])
        train_where = [(files["train.src"], files["train.tgt"], i + 1) for i in range(len(train))]
        if files["valid.src"].is_file():
            test = td.read_parallel(files["valid.src"], files["valid.tgt"])
            return train, test, train_where, [(files["valid.src"], files["valid.tgt"], i + 1)
                                              for i in range(len(test))]
    else:
        parts = path.split(":")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"--data parallel takes a folder (train.src, train.tgt, optionally valid.src, "
                             f"valid.tgt) or two aligned files as SOURCE:TARGET; got {path!r}")
        source, target = map(Path, parts)
        train = td.read_parallel(source, target)
        train_where = [(source, target, i + 1) for i in range(len(train))]
    if len(train) < 3:
        raise ValueError(f"{train_where[0][0]} has {len(train)} sentence pairs: at least 3 are needed to train on "
                         "some and hold out one (or give valid.src and valid.tgt)")
    held = min(MOST_HELD_OUT, max(1, round(HELD_OUT_FRACTION * len(train))))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    keep, held_out = sorted(order[held:]), sorted(order[:held])
    return ([train[i] for i in keep], [train[i] for i in held_out], [train_where[i] for i in keep],
            [train_where[i] for i in held_out])


TASK = TranslationTask
