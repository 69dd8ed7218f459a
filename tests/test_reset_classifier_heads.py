"""``reset_classifier`` and ``get_classifier`` on the segmentation models and detectors (issue 21, item 4): a new
number of classes, the backbone kept, as torchvision's fine-tuning tutorial replaces a detector's box predictor.

Every registered model of those tasks, on the meta device: after ``reset_classifier(k)`` its parameters and
buffers have the names and shapes that the constructor gives ``num_classes=k`` (the expected value comes from the
constructor, not from the code under test), with the auxiliary head where the model has one; ``get_classifier``
holds exactly the layers that were rebuilt; a number of classes the model cannot take is refused with a ValueError.

One small variant per architecture, with weights (the narrow builds of the family test files): before the reset a
target with a class the model does not have is refused; after it, every weight but the rebuilt layers' is unchanged
(the backbone's among them), the outputs have the new number of classes (segmentation: the channels of ``out`` and
``aux``; detection: the labels of the detections, the new classes among them), and a training step with targets
over the new classes runs and reaches the new layers.
"""

from __future__ import annotations

import inspect
import typing

import pytest
import torch

import paperzoo
from detection_data import make_shapes_dataset
from paperzoo.models.segmentation.deeplabv3 import DeepLabV3
from paperzoo.models.segmentation.fcn import FCN, FCNResNet
from paperzoo.models.segmentation.pspnet import PSPNet
from paperzoo.models.segmentation.unet import UNet
from paperzoo.registry import model_builder
from test_rcnn import small_detector
from test_retinanet import small_retinanet
from test_segmentation import SMALL_RESNET, SMALL_VGG
from test_ssd import small_ssd
from test_yolov3 import tiny_yolo

TASKS = ("semantic-segmentation", "object-detection", "instance-segmentation")
NAMES = [name for task in TASKS for name in paperzoo.list_models(task=task)]


def class_layer_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters of the layers ``reset_classifier`` rebuilds, by their names in the model."""
    prefixes = tuple(f"{name}." for name in model.class_layer_names)
    return {key: value for key, value in model.named_parameters() if key.startswith(prefixes)}


def with_aux_head(name: str) -> dict:
    """``aux_loss=True`` for a model that can have an auxiliary head, so that it is reset too."""
    model_class = typing.get_type_hints(model_builder(name))["return"]  # the builder's annotation: no build
    return {"aux_loss": True} if "aux_loss" in inspect.signature(model_class).parameters else {}


# --- every registered model, on the meta device --------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier_builds_what_the_constructor_builds_for_k_classes(name):
    kwargs = with_aux_head(name)
    with torch.device("meta"):
        model = paperzoo.create_model(name, **kwargs)
        k = model.num_classes + 4
        expected = paperzoo.create_model(name, num_classes=k, **kwargs)
        model.reset_classifier(k)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes == {key: tuple(value.shape) for key, value in expected.state_dict().items()}
    assert model.num_classes == k
    rebuilt = class_layer_parameters(model)
    assert rebuilt, f"{name}: no layer was rebuilt"
    assert {id(p) for p in model.get_classifier().parameters()} == {id(p) for p in rebuilt.values()}


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier_refuses_what_the_model_cannot_take(name):
    with torch.device("meta"):
        model = paperzoo.create_model(name)
    for bad in (model.min_num_classes - 1, 3.0, True):
        with pytest.raises(ValueError, match=f"expects num_classes, an int >= {model.min_num_classes}"):
            model.reset_classifier(bad)


# --- one small variant per architecture, with weights ---------------------------------------------------------------

def assert_only_the_class_layers_changed(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    prefixes = tuple(f"{name}." for name in model.class_layer_names)
    kept = {key: value for key, value in model.state_dict().items() if not key.startswith(prefixes)}
    assert len(kept) > len(before) // 2  # the backbone (U-Net: both paths) and the heads' other layers
    assert set(kept) == {key for key in before if not key.startswith(prefixes)}
    for key, value in kept.items():
        assert torch.equal(value, before[key]), f"{key} changed"


def assert_training_reaches_the_new_layers(model: torch.nn.Module, loss: torch.Tensor) -> None:
    assert torch.isfinite(loss)
    loss.backward()
    rebuilt = class_layer_parameters(model)
    assert all(parameter.grad is not None for parameter in rebuilt.values())
    # not every one: SSD's coarsest maps may hold no matched or mined default box of two small images
    assert sum(parameter.grad.abs().sum() for parameter in rebuilt.values()) > 0
    torch.optim.SGD(model.parameters(), lr=1e-3).step()


SMALL_SEGMENTERS = {  # 3 classes on grey images, and the input size (test_segmentation.small_variant's builds)
    "unet": lambda: (UNet(num_classes=3, base_width=8, depth=3), 140),
    "fcn8s": lambda: (FCN(output_stride=8, num_classes=3, in_chans=1, dropout=0.1, **SMALL_VGG), 64),
    "fcn_resnet": lambda: (FCNResNet(num_classes=3, in_chans=1, aux_loss=True, **SMALL_RESNET), 64),
    "deeplabv3": lambda: (DeepLabV3(num_classes=3, in_chans=1, aspp_channels=32, aux_loss=True, **SMALL_RESNET), 64),
    "pspnet": lambda: (PSPNet(num_classes=3, in_chans=1, head_channels=32, **SMALL_RESNET), 64),
}


@pytest.mark.parametrize("architecture", SMALL_SEGMENTERS)
def test_segmenter_reset_classifier_keeps_the_backbone_and_trains_on_k_classes(architecture, one_thread):
    torch.manual_seed(0)
    model, size = SMALL_SEGMENTERS[architecture]()
    model.train()
    images = torch.randn(2, 1, size, size)
    target = torch.randint(0, 5, (2, size, size))
    target[:, 0, 0] = 4  # a class of the new data set
    with pytest.raises(ValueError, match="classes are 0 … 2"):
        model.loss(model(images), target)
    before = {key: value.clone() for key, value in model.state_dict().items()}

    model.reset_classifier(5)

    assert_only_the_class_layers_changed(model, before)
    outputs = model(images)
    for key in ("out", "aux"):
        if key in outputs:
            assert outputs[key].shape[:2] == (2, 5)
    assert_training_reaches_the_new_layers(model, model.loss(outputs, target))


SMALL_DETECTORS = {  # (builder for a number of classes, the first object label, whether targets need masks)
    "faster_rcnn": (lambda k: small_detector(num_classes=k, box_score_thresh=0.0), 1, False),
    "mask_rcnn": (lambda k: small_detector(masks=True, num_classes=k, box_score_thresh=0.0), 1, True),
    "retinanet": (lambda k: small_retinanet(num_classes=k, score_thresh=0.0), 1, False),
    "ssd": (lambda k: small_ssd(num_classes=k, score_threshold=0.0), 1, False),
    "yolov3": (lambda k: tiny_yolo(num_classes=k, score_threshold=0.0), 0, False),  # no background class
}


@pytest.mark.parametrize("architecture", SMALL_DETECTORS)
def test_detector_reset_classifier_keeps_the_backbone_and_trains_on_k_classes(architecture, one_thread):
    builder, first_label, masks = SMALL_DETECTORS[architecture]
    torch.manual_seed(0)
    model = builder(first_label + 2).train()  # two object classes
    k = first_label + 5  # five object classes
    images, targets = make_shapes_dataset(2, size=64, num_classes=5, seed=0, with_masks=masks)
    for target in targets:  # labels 1 … 5 → first_label … k − 1, the first object of each image in the last class
        target["labels"] = target["labels"] - 1 + first_label
        target["labels"][0] = k - 1
    with pytest.raises(ValueError, match=f"label {k - 1} outside"):
        model(images, targets)
    before = {key: value.clone() for key, value in model.state_dict().items()}

    model.reset_classifier(k)

    assert_only_the_class_layers_changed(model, before)
    losses = model(images, targets)
    assert_training_reaches_the_new_layers(model, sum(losses.values()))
    model.eval()
    with torch.no_grad():
        labels = torch.cat([detections["labels"] for detections in model(images)])
    # RetinaNet, as torchvision's, scores class 0 too, which no target uses: labels start at 0 there
    assert len(labels) and 0 <= int(labels.min()) and int(labels.max()) < k
    assert int(labels.max()) >= first_label + 2, "no detection of a class the model did not have before"
