"""The Fréchet distance with which ``paperzoo train`` scores the generative models' samples of digits.

Heusel et al.'s FID (2017) compares two sets of images by the Gaussians fitted to their features in a trained
classifier: d² = |μ₁ − μ₂|² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½). Its Inception-v3 features were learned on ImageNet
photographs; for 28×28 digits a small classifier trained on digits measures what matters (the stroke shapes
that make a digit a digit) at no download. :class:`DigitFeatures` is that classifier: three 3×3 convolutions
and a global average pool to 64 features, then a linear layer to the ten digits; the features are the pooled
64. Its weights ship with paperzoo (``digit_features.safetensors``, 100 KB), made by
``python scripts/train_digit_features.py``: scikit-learn's digits upsampled to 28×28, the stratified split of
:func:`paperzoo.training.data.digits` (seed 0), 30 epochs of Adam, deterministic. Test accuracy on the 359
held-out digits: see ``TEST_ACCURACY`` (measured by the script, checked by the tests).

The distance is the same formula as FID but on other features, so its values are comparable only with each
other (the "FD" of this package, not published FIDs).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS = Path(__file__).with_name("digit_features.safetensors")
TEST_ACCURACY = 0.9944  # written by scripts/train_digit_features.py; tests/test_train_generative.py re-measures it


class DigitFeatures(nn.Module):
    """Images ``(N, 1, 28, 28)`` in [0, 1] → 64 features (``features``) or 10 digit logits (``forward``)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),  # 28 → 14
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # 14 → 7
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (N, 64)
        )
        self.classifier = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


_LOADED: dict[str, DigitFeatures] = {}


def load() -> DigitFeatures:
    """The shipped classifier, in eval mode (loaded once per process)."""
    if "net" not in _LOADED:
        from safetensors.torch import load_file

        net = DigitFeatures()
        net.load_state_dict(load_file(str(WEIGHTS)))
        _LOADED["net"] = net.eval()
    return _LOADED["net"]


def to_digit_input(images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Any model's images ``(N, C, H, W)`` in ``value_range`` as the classifier takes them: one channel (the mean
    of the channels), [0, 1], 28×28 (area-averaged, so a 64×64 DCGAN sample is judged at the digits' scale)."""
    low, high = value_range
    images = ((images.float() - low) / (high - low)).clamp(0, 1).mean(1, keepdim=True)
    if images.shape[-2:] != (28, 28):
        images = F.interpolate(images, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    return images


@torch.no_grad()
def features(images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    net = load()
    x = to_digit_input(images.cpu(), value_range)
    return torch.cat([net.features(part) for part in x.split(256)]).double()


def frechet_distance(first: torch.Tensor, second: torch.Tensor) -> float:
    """d² between the Gaussians fitted to two feature sets ``(N, D)``, ``(M, D)``.

    Tr((Σ₁ Σ₂)^½) is computed as Σ √λ over the eigenvalues λ of the symmetric Σ₁^½ Σ₂ Σ₁^½, which has the same
    eigenvalues as Σ₁ Σ₂ and keeps the computation in symmetric eigendecompositions (no general matrix root,
    whose round-off can turn complex)."""
    first, second = first.double(), second.double()
    mu1, mu2 = first.mean(0), second.mean(0)
    cov1, cov2 = torch.cov(first.T), torch.cov(second.T)
    values, vectors = torch.linalg.eigh(cov1)
    root1 = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * middle)
