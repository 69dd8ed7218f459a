"""Generative models (GAN, DCGAN, VAE, the deep autoencoder): scikit-learn's digits (default) or a folder of
images, each model's own objective, and after every epoch a grid of samples (and reconstructions) as PNG.

* The GANs play Algorithm 1 of Goodfellow et al. with k = 1: a step of the discriminator on −V(D, G), then a
  step of the generator on the non-saturating −E[log D(G(z))], each player with its own optimiser (Adam at
  2e-4, β₁ = 0.5: the DCGAN paper's §4 setting, which also trains the original GAN stably). ``train_loss`` is
  the discriminator's loss −V(D, G); both players' losses are logged.
* The VAE and the autoencoder take Adam at 1e-3 with a constant rate (see ``optimizers``).
* The VAE minimises −ELBO (eq. 10); its test metric is the ELBO of the held-out images, in nats.
* The autoencoder minimises its cross-entropy reconstruction error; the test metric is that error per image
  (and the squared error the paper's Figure 3 reports).

Sample quality: the Fréchet distance between the features of generated and held-out images in a small digits
classifier trained by this project (:mod:`paperzoo.training.digit_features`); for the autoencoder, which has
no prior to sample from, of its reconstructions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from paperzoo.registry import create_model
from paperzoo.training import checkpoints, distributed
from paperzoo.training import data as datasets
from paperzoo.training.tasks import Task, autocast

GRID = 64  # samples drawn after each epoch, as an 8×8 grid
SEED = 1234  # the fixed noise (and VAE sampling) of the evaluation and the pictures, the same every epoch


def _seeded(device: torch.device, function: Callable[[], Any]) -> Any:
    """``function()`` under a fixed seed, leaving the training's random state untouched (so resume is exact)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(SEED)
        return function()


class _Players(nn.Module):
    """The two players' objectives: ``forward(images, "discriminator")`` is −V(D, G) on fresh noise (G's
    samples detached), ``forward(images, "generator")`` the non-saturating −E[log D(G(z))]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, player: str = "discriminator") -> torch.Tensor:
        z = self.model.prior(len(images))
        if player == "discriminator":
            return self.model.discriminator_loss(images, z)
        return self.model.generator_loss(z)


class _Likelihood(nn.Module):
    """The VAE's −ELBO or the autoencoder's reconstruction error: the model's own ``loss``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any], int]:
        return self.model.loss(images).float(), {}, len(images)


class GenerativeTask(Task):
    data_kinds = ("digits", "folder")
    takes_path = ("folder",)
    unit = "images"
    not_shardable = ("the first process alone draws the samples after each epoch, which a sharded model cannot "
                     "do without the others")

    def __init__(self, config: Any, card: Any) -> None:
        super().__init__(config, card)
        with torch.device("meta"):
            probe = create_model(config.model)
        # Which objective: two players, a variational bound, or a reconstruction error.
        self.kind = "gan" if hasattr(probe, "discriminator") else "vae" if hasattr(probe, "elbo") else "autoencoder"
        self.metric, self.higher_is_better = {"gan": ("frechet_distance", False), "vae": ("elbo", True),
                                              "autoencoder": ("reconstruction_error", False)}[self.kind]
        self.progress_metric = ("generator_loss", "G loss", ".3f") if self.kind == "gan" else None
        self.takes_channels = "image_channels" in inspect.signature(type(probe)).parameters  # DCGAN: any channels

    def prepare(self) -> None:
        config = self.config
        with torch.device("meta"):
            try:
                probe = create_model(config.model, **self.build_kwargs())
            except TypeError as err:  # an argument the constructor does not take
                raise ValueError(f"--model-kwargs {self.config.model_kwargs}: {err}") from None
        channels, size, _ = probe.image_shape
        if config.image_size not in (None, size):
            raise ValueError(f"{config.model} generates {size}x{size} images; --image-size {config.image_size} "
                             f"does not apply (the size is the network's; change it with --model-kwargs)")
        self.image_shape = tuple(probe.image_shape)
        self.value_range = tuple(probe.output_range)
        low, high = self.value_range

        def scaled(images: torch.Tensor) -> torch.Tensor:  # [0, 1] → the generator's output range (DCGAN: tanh)
            return images * (high - low) + low

        if config.data == "digits":
            self.train_set, self.test_set = (
                TensorDataset(scaled(datasets.digits(split, size, channels, seed=config.seed).tensors[0]))
                for split in ("train", "test"))
        else:
            from paperzoo.training.generative_data import image_files

            train, test = image_files(config.data_path, size, channels, seed=config.seed)
            self.train_set, self.test_set = TensorDataset(scaled(train)), TensorDataset(scaled(test))
        self._real_features = None

    def model_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.takes_channels:  # the digits are grey; a folder's images RGB
            kwargs["image_channels"] = 1 if self.config.data in (None, "digits") else 3
        return kwargs

    def settings(self) -> dict[str, Any]:
        return dict(self.option_values)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"model_kwargs": self.build_kwargs()}

    def inference(self) -> dict[str, Any]:
        # paperzoo sample --checkpoint (and from_pretrained): the model, and the range of its images
        return {"model_kwargs": self.built_kwargs(), "value_range": list(self.value_range)}

    def collate(self, examples: list[tuple[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([example[0] for example in examples])

    # --- the objective: one step of one loss, or Algorithm 1's two players --------------------------------------

    def objective(self, model: nn.Module) -> nn.Module:
        return _Players(model) if self.kind == "gan" else _Likelihood(model)

    def optimizers(self, model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
        """The GANs: Adam with β₁ = 0.5 per player (DCGAN §4). The VAE and the autoencoder: Adam, no weight
        decay, the nearest to their papers' plain adaptive gradient steps (the VAE's Adagrad; the autoencoder's
        fine-tuning by conjugate gradients has no minibatch counterpart); a weight decay would pull the
        decoder against the likelihood it maximises."""
        if self.card.recipe is not None:
            return super().optimizers(model, lr)
        if self.kind != "gan":
            return [torch.optim.Adam(model.parameters(), lr=lr)]
        return [torch.optim.Adam(half.parameters(), lr=lr, betas=(0.5, 0.999))
                for half in (model.discriminator, model.generator)]

    @property
    def lr(self) -> float:
        if self.config.lr or self.card.recipe is not None:
            return super().lr
        return 2e-4 if self.kind == "gan" else 1e-3

    def schedules(self, optimizers: list[torch.optim.Optimizer], epochs: int,
                  steps_per_epoch: int) -> list[torch.optim.lr_scheduler.LRScheduler]:
        if self.card.recipe is not None:
            return super().schedules(optimizers, epochs, steps_per_epoch)
        # All four papers keep the learning rate constant (the GAN release's slow decay does not matter here).
        return [torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0) for optimizer in optimizers]

    def distribute(self, objective: nn.Module) -> nn.Module:
        # The discriminator's step leaves the generator without gradients (its samples are detached).
        return nn.parallel.DistributedDataParallel(objective, find_unused_parameters=self.kind == "gan")

    def train_step(self, trained: nn.Module, batch: Any, optimizers: list[torch.optim.Optimizer], scaler: Any,
                   device: torch.device, amp: bool) -> tuple[torch.Tensor, dict[str, Any], int]:
        if self.kind != "gan":
            return super().train_step(trained, batch, optimizers, scaler, device, amp)
        losses = []
        for player, optimizer in zip(("discriminator", "generator"), optimizers, strict=True):
            with autocast(device, amp):
                loss = trained(batch, player).float()
            for each in optimizers:  # G's step also reaches D's parameters: D's gradient starts from zero
                each.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            losses.append(loss.detach())
        scaler.update()
        n = len(batch)
        return losses[0], {"discriminator_loss": losses[0] * n, "generator_loss": losses[1] * n}, n

    # --- metrics and pictures ---------------------------------------------------------------------------------

    def _generated(self, model: nn.Module, device: torch.device, n: int) -> torch.Tensor:
        """n samples from the model's prior (the autoencoder: reconstructions of the first n test images)."""
        if self.kind == "autoencoder":
            images = self.test_set.tensors[0][:n].to(device)
            return model(images)
        return _seeded(device, lambda: model.sample(n))

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
                 amp: bool) -> dict[str, float]:
        from paperzoo.training import digit_features

        model.eval()
        sums = {}
        count = 0
        with torch.no_grad(), autocast(device, amp):
            for images in loader:
                images = images.to(device)
                if self.kind == "gan":
                    z = _seeded(device, partial(model.prior, len(images)))
                    parts = {"discriminator_loss": model.discriminator_loss(images, z),
                             "generator_loss": model.generator_loss(z)}
                elif self.kind == "vae":
                    parts = {"elbo": _seeded(device, partial(model.elbo, images)).mean()}
                else:
                    recon = model(images).float()
                    parts = {"reconstruction_error": model.loss(images),
                             "squared_error": (recon - images).pow(2).flatten(1).sum(1).mean()}
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value.item() * len(images)
                count += len(images)
        totals = distributed.all_sum([count, *sums.values()], context, device)
        metrics = {key: total / totals[0] for key, total in zip(sums, totals[1:], strict=True)}
        # The Fréchet distance over the whole test set, computed alike on every process (same model, same noise).
        with torch.no_grad():
            real = self.test_set.tensors[0]
            if self._real_features is None:
                self._real_features = digit_features.features(real, self.value_range)
            generated = self._generated(model, device, len(real)).float()
            metrics["frechet_distance"] = digit_features.frechet_distance(
                digit_features.features(generated, self.value_range), self._real_features)
        return metrics

    def after_epoch(self, model: nn.Module, out: Path, epoch: int) -> list[str]:
        from torchvision.utils import save_image

        model.eval()
        low, high = self.value_range
        device = next(model.parameters()).device
        pictures = {}
        with torch.no_grad():
            if self.kind != "autoencoder":
                pictures["samples"] = _seeded(device, lambda: model.sample(GRID))
            if self.kind != "gan":  # rows of 8 test images, each above its reconstruction
                n = len(self.test_set)
                n = min(32, n // 8 * 8) or n  # whole rows of 8 where the test set allows
                originals = self.test_set.tensors[0][:n].to(device)
                recon = model(originals)
                pictures["reconstructions"] = torch.cat([part for row in range(0, n, 8)
                                                         for part in (originals[row:row + 8], recon[row:row + 8])])
        written = []
        for name, images in pictures.items():
            path = out / name / f"epoch_{epoch:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            grid = ((images.float().cpu() - low) / (high - low)).clamp(0, 1)
            checkpoints.atomic_write(path, lambda tmp, grid=grid: save_image(grid, tmp, nrow=min(8, len(grid)),
                                                                             padding=2, format="png"))
            written.append(str(path.relative_to(out)))
        model.train()
        return written

    def outputs(self) -> list[str]:
        return [name + "/" for name in (("samples",) if self.kind == "gan" else ("samples", "reconstructions")
                                        if self.kind == "vae" else ("reconstructions",))]


TASK = GenerativeTask
