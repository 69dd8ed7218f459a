"""The thin adapter that points timm's own model tests (``tests/timm_model_tests.py``) at paperzoo's registry:
the names those tests import from ``timm`` (``create_model``, ``list_models``, ``get_pretrained_cfg_value``) and
the one list of timm classes they read (``EARLY_POOL_MODELS``), answered by paperzoo."""

from __future__ import annotations

import functools
from typing import Any

import torch

import paperzoo
from paperzoo.models.classification.alexnet import AlexNet
from paperzoo.models.classification.ghostnet import GhostNet
from paperzoo.models.classification.vgg import VGG


def create_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> torch.nn.Module:
    return paperzoo.create_model(model_name, pretrained=pretrained, **kwargs)


def list_models(pattern: str = "*", **_: Any) -> list[str]:
    return paperzoo.list_models(pattern, task="image-classification")


@functools.cache
def _cfg(model_name: str) -> dict[str, Any]:
    return paperzoo.create_model(model_name, device="meta").pretrained_cfg


def get_pretrained_cfg_value(model_name: str, key: str) -> Any:
    return _cfg(model_name).get(key)


# timm: "models with extra conv/linear layers after pooling", where reset_classifier(0, '') cannot give the
# unpooled map because the head's hidden layers need pooled (or fixed-size) input. timm lists its VGG; ours too.
EARLY_POOL_MODELS = (AlexNet, GhostNet, VGG)
