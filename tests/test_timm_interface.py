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


# timm's test_model_default_cfgs checks metadata and shapes only, "without allocating weights" on the meta device.
# On the meta device a model's build and forward passes cost the dispatch of each operation, on the CPU its weights'
# initialisation and the arithmetic at the 64x64 test size: measured one thread, quiet machine, the CPU took longer
# for every architecture above 22M parameters (VGG-11 4.96 s against 0.05, AlexNet 2.27 against 0.06, ViT-B/16
# 3.86 against 0.45) and the meta device for every one below it (NASNet-A Mobile 1.21 against 2.26).
META_ABOVE_PARAMS = 22_000_000


@pytest.fixture
def cfg_device(request) -> str:
    return "meta" if model_card(request.node.callspec.params["model_name"]).params > META_ABOVE_PARAMS else "cpu"


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


# CapsNet's reconstruction decoder is reached by its loss (training_loss, masked by the true class), not by the
# forward pass, which returns the class scores as every classifier: test_capsnet_backward checks it instead.
@pytest.mark.parametrize("model_name", [n for n in ARCHITECTURES if n != "capsnet"])
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


def test_capsnet_backward():
    """timm's backward check for CapsNet, through its loss: every parameter, the decoder's too, gets a gradient;
    the forward pass's scores reach all but the decoder."""
    torch.manual_seed(0)
    model = paperzoo.create_model("capsnet", num_classes=42).train()
    images, labels = torch.rand(2, 1, 28, 28), torch.tensor([3, 41])
    loss, scores = model.training_loss(images, labels)
    loss.backward()
    assert scores.shape == (2, 42) and all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=True)
    model(images).mean().backward()
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.grad is None} == {"decoder"}


@pytest.mark.parametrize("model_name", ["capsnet", "odenet"])
def test_not_applicable(model_name: str) -> None:
    """What an architecture cannot have raises an error that says why, instead of a missing attribute."""
    with pytest.raises(NotApplicableError, match="feature levels|stages|capsule|continuous"):
        paperzoo.create_model(model_name, features_only=True)


# --- the gaps issue 21 listed, each checked where it was ------------------------------------------------------

def test_nasnet_classifier_lists_the_levels_its_backbone_returns():
    """NASNet's classifier had an empty feature_info while its features_only build listed 5 levels."""
    classifier = paperzoo.create_model("nasnet_a_mobile", device="meta")
    backbone = paperzoo.create_model("nasnet_a_mobile", features_only=True, device="meta")
    assert len(classifier.feature_info) == 5 and classifier.feature_info == backbone.feature_info
    assert classifier.feature_info.reduction() == [2, 4, 8, 16, 32]


def test_coordconv_resnet_builds_as_a_backbone():
    """create_model("coordconv_resnet50", features_only=True) built, then its forward raised AttributeError."""
    backbone = paperzoo.create_model("coordconv_resnet50", features_only=True, out_indices=(1, 3)).eval()
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == backbone.feature_info.channels() == [512, 2048]
    assert [64 // m.shape[-1] for m in maps] == backbone.feature_info.reduction() == [8, 32]


@pytest.mark.parametrize(("name", "features", "pre_logits"), [("vgg11", 512, 4096), ("alexnet", 256, 4096),
                                                                ("ghostnet_050", 480, 1280)])
def test_num_features_is_the_feature_maps_width(name, features, pre_logits):
    """num_features was the pre-logits width (VGG's 4096); timm's meaning is forward_features' channels."""
    model = paperzoo.create_model(name, device="meta").eval()
    x = torch.empty(1, 3, 224, 224, device="meta")
    feature_map = model.forward_features(x)
    assert feature_map.shape[1] == model.num_features == features
    assert model.forward_head(feature_map, pre_logits=True).shape[1] == model.head_hidden_size == pre_logits


def test_swin_says_its_features_are_channels_last():
    model = paperzoo.create_model("swin_t", device="meta")
    x = torch.empty(1, 3, 224, 224, device="meta")
    assert model.output_fmt == "NHWC" and model.forward_features(x).shape == (1, 7, 7, 768)
    final, maps = model.forward_intermediates(x)  # NCHW unless asked otherwise, as timm
    assert [tuple(m.shape[1:]) for m in maps] == [(96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7)]
    assert model.forward_intermediates(x, indices=1, output_fmt="NHWC", intermediates_only=True)[0].shape == (
        1, 7, 7, 768)


def test_timm_resolves_the_preprocessing_of_the_weights():
    """timm.data.resolve_data_config(model=...) fell back to 224 pixels; the expected values are torchvision's
    own metadata of the default weights, read here from torchvision."""
    import timm.data
    import torchvision

    for name, weights in [("efficientnet_b1", torchvision.models.EfficientNet_B1_Weights.DEFAULT),
                          ("inception_v3", torchvision.models.Inception_V3_Weights.DEFAULT),
                          ("resnet50", torchvision.models.ResNet50_Weights.DEFAULT)]:
        preprocessing = weights.transforms()
        config = timm.data.resolve_data_config(model=paperzoo.create_model(name, device="meta"))
        crop, resize = preprocessing.crop_size[0], preprocessing.resize_size[0]
        assert config["input_size"] == (3, crop, crop), name
        assert config["crop_pct"] == pytest.approx(crop / resize, abs=1e-4), name
        assert config["interpolation"] == preprocessing.interpolation.value, name
        assert config["mean"] == tuple(preprocessing.mean) and config["std"] == tuple(preprocessing.std), name


def test_timm_keywords_reach_every_classifier():
    model = paperzoo.create_model("convnextv2_atto", drop_rate=0.3, drop_path_rate=0.2, global_pool="max",
                                  device="meta", dtype=torch.float64)
    assert next(model.parameters()).dtype == torch.float64 and next(model.parameters()).device.type == "meta"
    assert model.global_pool.pool_type == "max" and model.drop_rate == 0.3
    rates = [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    with pytest.raises(NotApplicableError, match="stochastic depth"):
        paperzoo.create_model("vgg11", drop_path_rate=0.1, device="meta")
    with pytest.raises(TypeError):
        paperzoo.create_model("resnet18", not_a_model_arg=1, device="meta")
