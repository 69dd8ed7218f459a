"""Language modelling (GPT, GPT-2): predict each token of a text from the tokens before it, on the embedded
Genesis text or a plain-text file, with a byte-level BPE trained on that text (or the published tokenizer with
``--pretrained``); metric: perplexity on the held-out end of the text.

The recipe is GPT's (§4.1): Adam with weight decay 0.01, the learning rate raised linearly from zero over the
first 2,000 updates (here at most a tenth of the run) and annealed to zero on a cosine; peak 2.5e-4. The
GPT-2 paper gives no optimiser settings, so its sizes train with GPT's. Deviation: batches of 32 windows of
``--seq-len`` tokens (the paper: 64 of 512), so that a small text gives several steps per epoch.

The run folder also holds ``tokenizer.json`` (the ``tokenizers`` library's format), which
``paperzoo generate NAME --checkpoint RUN`` reads with ``model.safetensors`` and ``config.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from paperzoo.registry import ModelCard, TrainingRecipe, create_model
from paperzoo.training import checkpoints, distributed
from paperzoo.training import text_data as texts
from paperzoo.training.tasks import Option, Task, autocast

GPT_RECIPE = TrainingRecipe(
    optimizer="adamw", lr=2.5e-4, weight_decay=0.01, schedule="cosine", batch_size=32,
    source="GPT §4.1: Adam, lr warmed up linearly over 2,000 updates (here at most 10% of the run) to 2.5e-4, then "
           "cosine-annealed to 0; weight decay 0.01 (batch 32 windows here, 64 of 512 tokens in the paper)")
WARMUP_STEPS = 2000  # GPT §4.1


class _Step(nn.Module):
    """A batch of windows ``(N, T)`` in, ``(mean loss, {}, predicted tokens)`` out: ``model.loss`` is the
    paper's objective (eq. 1, the mean negative log-likelihood of every token given those before it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any], int]:
        return self.model.loss(ids).float(), {}, ids.numel() - len(ids)


def warmup_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                    decay: str) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate factor per step: a linear rise from 0 over ``warmup_steps`` (at most a tenth of the
    run), then ``decay`` to 0 at the end: "cosine" (GPT) or "linear" (BERT)."""
    warmup = max(1, min(warmup_steps, total_steps // 10))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * done)) if decay == "cosine" else 1.0 - done

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class LanguageModelTask(Task):
    data_kinds = ("genesis", "text")
    takes_path = ("text",)
    metric = "perplexity"
    higher_is_better = False
    unit = "tokens"
    options: ClassVar[dict[str, Option]] = {
        "seq_len": Option(int, 128, "language models: tokens per training window"),
        "vocab_size": Option(int, 2048, "language models: the size of the tokenizer trained on the text (not with "
                                        "--pretrained, which keeps the published one)"),
    }
    recipe_default: ClassVar[TrainingRecipe | None] = GPT_RECIPE
    warmup_steps: ClassVar[int] = WARMUP_STEPS
    decay: ClassVar[str] = "cosine"

    def __init__(self, config: Any, card: ModelCard) -> None:
        super().__init__(config, card)
        if card.recipe is None and self.recipe_default is not None:
            self.recipe = self.recipe_default

    # --- data ------------------------------------------------------------------------------------------------

    def read(self) -> tuple[str, str, str]:
        """The text's name (for messages), its training part and its held-out part."""
        config = self.config
        if config.pretrained and config.model_kwargs:
            raise ValueError(f"--pretrained keeps the published {config.model}'s size: drop --model-kwargs "
                             + " ".join(f"{k}={v!r}" for k, v in config.model_kwargs.items()))
        if "vocab_size" in config.model_kwargs:
            raise ValueError("--model-kwargs vocab_size: the vocabulary is the tokenizer's, trained on the text; "
                             "set its size with --vocab-size N")
        path = Path(config.data_path) if config.data == "text" else texts.DEFAULT_TEXT
        train_text, test_text = texts.split_text(texts.read_text(path))
        return str(path), train_text, test_text

    def tokenizer(self, train_text: str) -> Any:
        """The run's tokenizer: a resumed run's own (from its checkpoint), the published one with
        ``--pretrained``, or one trained on the training text; under torchrun, the first process's."""
        tokenizer = self._tokenizer(train_text)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # The WordPiece trainer breaks ties between pieces of equal frequency in hash order, which differs
            # between processes: every process takes the first one's vocabulary.
            shared = [tokenizer.to_str()]
            torch.distributed.broadcast_object_list(shared, src=0)
            tokenizer = texts.tokenizers_library().Tokenizer.from_str(shared[0])
        return tokenizer

    def _tokenizer(self, train_text: str) -> Any:
        config = self.config
        if config.resume is not None:
            state = checkpoints.load_checkpoint(config.resume, config.model)
            if "tokenizer" in state:
                return texts.tokenizers_library().Tokenizer.from_str(state["tokenizer"])
        if config.pretrained:
            from paperzoo.interop.huggingface import tokenizer
            from paperzoo.weights import get_weights

            return tokenizer(get_weights(config.model, config.pretrained).hub_repo)
        return self.train_tokenizer(train_text)

    def positions(self) -> int | None:
        """The longest window the model takes (its learned positions, ``--model-kwargs max_positions=N`` where
        given), or None for no limit."""
        return self.config.model_kwargs.get("max_positions", self.card.input.shape[0])

    def train_tokenizer(self, text: str) -> Any:
        return texts.train_byte_level_bpe(text, self.option_values["vocab_size"])

    def prepare(self) -> None:
        name, train_text, test_text = self.read()
        seq_len = self.option_values["seq_len"]
        if seq_len < 2:
            raise ValueError(f"--seq-len {seq_len} leaves nothing to predict: a window needs at least 2 tokens")
        positions = self.positions()
        if positions is not None and seq_len > positions:
            raise ValueError(f"--seq-len {seq_len} exceeds {self.config.model}'s {positions} positions")
        self.text_tokenizer = self.tokenizer(train_text)
        self.vocabulary = self.text_tokenizer.get_vocab_size()
        self.train_set = texts.TokenWindows(texts.encode(self.text_tokenizer, train_text), seq_len)
        self.test_set = texts.TokenWindows(texts.encode(self.text_tokenizer, test_text), seq_len)
        if len(self.train_set) < 2 or len(self.test_set) < 1:
            raise ValueError(f"text file {name} is too short: its training part makes {len(self.train_set)} and its "
                             f"held-out last tenth {len(self.test_set)} windows of --seq-len {seq_len} tokens (at "
                             "least 2 and 1 are needed): give a longer text or a smaller --seq-len")

    # --- model -----------------------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {**self.option_values, "vocabulary": self.vocabulary}

    @classmethod
    def rebuild(cls, name: str, settings: dict[str, Any], pretrained: bool | str = False) -> nn.Module:
        """The model a run with these settings trains (``generate`` rebuilds it from the run's config.json)."""
        if pretrained:
            return create_model(name, pretrained=pretrained)
        if settings.get("pretrained"):  # a fine-tuned run: the published weights' shapes, filled from its file
            from paperzoo.weights import get_weights

            return create_model(name, **get_weights(name, settings["pretrained"]).model_kwargs)
        return create_model(name, vocab_size=settings["vocabulary"], **cls.size_kwargs(settings["model_kwargs"]))

    @classmethod
    def size_kwargs(cls, model_kwargs: dict[str, Any]) -> dict[str, Any]:
        """The constructor's arguments from ``--model-kwargs`` (the model's own names, e.g. ``num_layers=2
        hidden_size=64 num_heads=4``); BERT adds the feed-forward width its paper ties to the width, 4H."""
        return dict(model_kwargs)

    def build_model(self) -> nn.Module:
        settings = {**self.settings(), "model_kwargs": self.config.model_kwargs}  # as config.json's "run" has them
        return self.rebuild(self.config.model, settings, self.config.pretrained)

    def objective(self, model: nn.Module) -> nn.Module:
        return _Step(model)

    def schedules(self, optimizers: list[torch.optim.Optimizer], epochs: int,
                  steps_per_epoch: int) -> list[torch.optim.lr_scheduler.LRScheduler]:
        if self.card.recipe is not None or self.recipe_default is None:
            return super().schedules(optimizers, epochs, steps_per_epoch)
        return [warmup_schedule(o, epochs * steps_per_epoch, self.warmup_steps, self.decay) for o in optimizers]

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
                 amp: bool) -> dict[str, float]:
        """The mean negative log-likelihood per held-out token and its exponential, the perplexity."""
        model.eval()
        loss_sum = count = 0.0
        with torch.no_grad(), autocast(device, amp):
            for ids in loader:
                ids = ids.to(device)
                predicted = ids.numel() - len(ids)
                loss_sum += model.loss(ids).float().item() * predicted
                count += predicted
        loss_sum, count = distributed.all_sum([loss_sum, count], context, device)
        loss = loss_sum / count
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    # --- what the run leaves ---------------------------------------------------------------------------------

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"tokenizer": self.text_tokenizer.to_str()}

    def after_epoch(self, model: nn.Module, out: Path, epoch: int) -> list[str]:
        text = self.text_tokenizer.to_str()
        checkpoints.atomic_write(out / "tokenizer.json", lambda tmp: tmp.write_text(text))
        return ["tokenizer.json"]

    def outputs(self) -> list[str]:
        return ["tokenizer.json"]


def load_run(name: str, checkpoint: str | Path) -> tuple[nn.Module, Any]:
    """The model and tokenizer a ``paperzoo train`` run left: ``checkpoint`` is its folder or its
    ``model.safetensors`` (with ``config.json`` and ``tokenizer.json`` beside it)."""
    import importlib

    from safetensors.torch import load_file

    from paperzoo.registry import model_card
    from paperzoo.training.tasks import TASK_MODULES

    path = Path(checkpoint)
    folder = path if path.is_dir() else path.parent
    weights = path if path.is_file() else folder / "model.safetensors"
    missing = [f.name for f in (weights, folder / "config.json", folder / "tokenizer.json") if not f.is_file()]
    if missing:
        raise ValueError(f"--checkpoint {checkpoint}: no {', '.join(missing)} in {folder} (give the folder of a "
                         "finished paperzoo train run, or its model.safetensors)")
    config = json.loads((folder / "config.json").read_text())
    if config.get("model") != name:
        raise ValueError(f"--checkpoint {checkpoint} holds a {config.get('model')!r} run, not {name!r}")
    card = model_card(name)
    task = importlib.import_module(f"paperzoo.training.tasks.{TASK_MODULES[card.task]}").TASK
    model = task.rebuild(name, config["run"])  # the trained shapes; the weights come from the file
    model.load_state_dict(load_file(str(weights)))
    tokenizer = texts.tokenizers_library().Tokenizer.from_file(str(folder / "tokenizer.json"))
    return model.eval(), tokenizer


TASK = LanguageModelTask
