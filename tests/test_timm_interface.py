"""timm's own model tests over paperzoo's image classifiers (issue 21).

The test functions are timm's (``tests/timm_model_tests.py``, vendored unchanged from timm 1.0.31), pointed at
paperzoo's registry by ``tests/timm_adapter.py``. What runs, and over which models:

* ``test_model_default_cfgs`` (``test_model_default_cfgs_non_std`` for the ViTs, as timm's NON_STD filter sorts
  them): structure, shapes, ``pretrained_cfg``, classifier reset and removal, ``device=``/``dtype=``;
* ``test_model_forward``, ``test_model_backward``, ``test_model_forward_features``,
  ``test_model_forward_intermediates``;

over one variant per architecture (its smallest registered one: the interface is its class's, the same for every
variant), at a 64×64 input (``timm_adapter.py``), so that the file stays within CI's time on 2 cores.

CapsNet and ODE-Net have no stages to return (one capsule layer; one continuous block): the feature tests do not
apply and ``test_not_applicable`` checks that they say why instead.
"""

from __future__ import annotations

import fnmatch

import pytest
import torch

import paperzoo
import timm_model_tests as timm_tests
from paperzoo.layers.classifier import NotApplicableError
from paperzoo.registry import model_card, model_module

pytestmark = pytest.mark.usefixtures("one_thread")


def _architectures() -> list[str]:
    """One variant per architecture (model file): its smallest registered one."""
    smallest: dict[str, tuple[int, str]] = {}
    for name in paperzoo.list_models(task="image-classification"):
        entry = (model_card(name).params, name)
        smallest[model_module(name)] = min(smallest.get(model_module(name), entry), entry)
    return sorted(name for _, name in smallest.values())


# coordconv_classifier classifies (x, y) coordinates, not images: timm's image interface does not apply to it.
ARCHITECTURES = [n for n in _architectures() if model_card(n).input.kind == "image"]
NO_STAGES = ("capsnet", "odenet")  # one capsule layer / one continuous block: no feature levels
NON_STD = [n for n in ARCHITECTURES if fnmatch.fnmatch(n, "vit_*")]  # timm's NON_STD_FILTERS: 'vit_*'
STD = [n for n in ARCHITECTURES if n not in NON_STD and n not in NO_STAGES]


@pytest.fixture
def cfg_device() -> str:
    return "cpu"  # timm's fallback device; at the test size the real computation costs less than meta's tracing


@pytest.mark.parametrize("model_name", STD)
def test_model_default_cfgs(model_name: str, cfg_device: str) -> None:
    timm_tests.test_model_default_cfgs(model_name, 1, cfg_device)


@pytest.mark.parametrize("model_name", NON_STD)
def test_model_default_cfgs_non_std(model_name: str, cfg_device: str) -> None:
    timm_tests.test_model_default_cfgs_non_std(model_name, 1, cfg_device)


@pytest.mark.parametrize("model_name", ARCHITECTURES)
def test_model_forward(model_name: str) -> None:
    torch.manual_seed(0)
    timm_tests.test_model_forward(model_name, 1)


@pytest.mark.parametrize("model_name", ARCHITECTURES)
def test_model_backward(model_name: str) -> None:
    torch.manual_seed(0)
    timm_tests.test_model_backward(model_name, 2)


@pytest.mark.parametrize("model_name", [n for n in STD])
def test_model_forward_features(model_name: str) -> None:
    torch.manual_seed(0)
    timm_tests.test_model_forward_features(model_name, 1)


@pytest.mark.parametrize("model_name", [n for n in ARCHITECTURES if n not in NO_STAGES])
def test_model_forward_intermediates(model_name: str) -> None:
    torch.manual_seed(0)
    timm_tests.test_model_forward_intermediates(model_name, 1)


@pytest.mark.parametrize("model_name", ["capsnet", "odenet"])
def test_not_applicable(model_name: str) -> None:
    """What an architecture cannot have raises an error that says why, instead of a missing attribute."""
    with pytest.raises(NotApplicableError, match="feature levels|stages|capsule|continuous"):
        paperzoo.create_model(model_name, features_only=True)
