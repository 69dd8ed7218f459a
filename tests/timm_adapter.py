"""The thin adapter that points timm's own model tests (``tests/timm_model_tests.py``) at paperzoo's registry:
the names those tests import from ``timm`` (``create_model``, ``list_models``, ``get_pretrained_cfg_value``) and
the one list of timm classes they read (``EARLY_POOL_MODELS``), answered by paperzoo.

Sizes: timm's tests take the input size from the model's ``pretrained_cfg``. To keep the run within CI's time on
2 CPU cores, ``create_model`` here passes timm's ``pretrained_cfg_overlay`` with a 64×64 input (or the model's
minimum, or the only size it takes), which the tests then use everywhere (timm shrinks its own CI's inputs with
its TARGET_* sizes the same way)."""

from __future__ import annotations

import functools
from typing import Any

import torch

import paperzoo
from paperzoo.models.classification.alexnet import AlexNet
from paperzoo.models.classification.ghostnet import GhostNet
from paperzoo.models.classification.vgg import VGG
from paperzoo.registry import model_card

TEST_SIZE = 64


def test_input_size(model_name: str, in_chans: int | None = None) -> tuple[int, int, int]:
    """64×64, or the card's size where it is smaller (the 28×28 models) or the only one the model takes."""
    spec = model_card(model_name).input
    size = spec.shape[-1] if spec.fixed_size else max(min(TEST_SIZE, spec.shape[-1]), spec.min_size)
    return (spec.shape[0] if in_chans is None else in_chans, size, size)


def create_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> torch.nn.Module:
    overlay = {"input_size": test_input_size(model_name, kwargs.get("in_chans"))}
    return paperzoo.create_model(model_name, pretrained=pretrained, pretrained_cfg_overlay=overlay, **kwargs)


def list_models(pattern: str = "*", **_: Any) -> list[str]:
    return paperzoo.list_models(pattern, task="image-classification")


@functools.cache
def _cfg(model_name: str) -> dict[str, Any]:
    return create_model(model_name, device="meta").pretrained_cfg


def get_pretrained_cfg_value(model_name: str, key: str) -> Any:
    return _cfg(model_name).get(key)


# timm: "models with extra conv/linear layers after pooling", where reset_classifier(0, '') cannot give the
# unpooled map: timm lists its VGG and GhostNet; ours are VGG and AlexNet (fully-connected layers on a fixed-size
# map) and GhostNet (a 1×1 convolution after the pool).
EARLY_POOL_MODELS = (AlexNet, GhostNet, VGG)
