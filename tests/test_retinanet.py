"""RetinaNet (models/detection/retinanet.py) against torchvision's ``retinanet_resnet50_fpn`` and the paper.

Parity: torchvision's randomly initialised weights, converted, give the same detections (eval) and the same losses
and gradients (training, same images, targets and seed), for the canonical ResNet-50 model (P6 from P5, torchvision's
v1) and for a ResNet-18 model with the paper's P6 from C5 (torchvision's ``RetinaNet`` class with
``LastLevelP6P7(512, 256)``). The focal loss equals ``torchvision.ops.sigmoid_focal_loss`` and the paper's own
numbers (§3.2); the prior-probability initialisation and the matching thresholds are the paper's (§3.3, §4).
Every expected value comes from torchvision or from the paper (said at each place); none is hard-coded otherwise.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torchvision
from torchvision.models.detection import RetinaNet as TVRetinaNet
from torchvision.models.detection import retinanet as tv_retinanet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d as TVFrozenBatchNorm2d
from torchvision.ops import sigmoid_focal_loss
from torchvision.ops.feature_pyramid_network import LastLevelP6P7 as TVLastLevelP6P7

import paperzoo
from conftest import assert_close_rel, randomize_weights
from detection_data import make_shapes_dataset
from paperzoo.interop import load_weights
from paperzoo.measure import count_parameters
from paperzoo.models.detection.boxes import Matcher
from paperzoo.models.detection.fpn import FeaturePyramidNetwork, LastLevelP6P7
from paperzoo.models.detection.retinanet import RetinaNet, anchor_sizes_per_level, focal_loss, prior_bias


def calibrate_heads(reference: torch.nn.Module, images: list[torch.Tensor]) -> None:
    """After ``randomize_weights`` the subnets' outputs are huge (every score 1.0, ties everywhere): rescale the two
    output convolutions so that the logits have unit spread around a bias of -3 (a few hundred distinct scores above
    0.05 per image) and the box offsets a spread of 0.2 (boxes that move, but stay near their anchors)."""
    outputs = {}
    hook = reference.head.register_forward_hook(lambda module, args, output: outputs.update(output))
    with torch.no_grad():
        reference.eval()(images)
        hook.remove()
        classifier = reference.head.classification_head.cls_logits
        regressor = reference.head.regression_head.bbox_reg
        classifier.weight.mul_(1.0 / outputs["cls_logits"].std())
        classifier.bias.fill_(-3.0)
        regressor.weight.mul_(0.2 / outputs["bbox_regression"].std())
        regressor.bias.zero_()


def assert_same_detections(ours: list[dict], reference: list[dict], top: int = 100, tol: float = 1e-4) -> None:
    """The same detections per image: the same number; the scores, sorted, to ``tol``; and each of our ``top``
    best detections found among torchvision's with the same label, a score within ``tol`` and a box within ``tol``
    relative to the image's largest coordinate (matched as a set: where NMS meets equal scores, the order of the
    tied detections may differ)."""
    assert len(ours) == len(reference)
    for mine, theirs in zip(ours, reference, strict=True):
        assert len(mine["boxes"]) == len(theirs["boxes"]) > 0
        assert_close_rel(mine["scores"].sort(descending=True).values, theirs["scores"].sort(descending=True).values,
                         rtol=tol)
        scale = theirs["boxes"].abs().max()
        for k in range(min(top, len(mine["boxes"]))):
            candidates = ((theirs["labels"] == mine["labels"][k])
                          & ((theirs["scores"] - mine["scores"][k]).abs() <= tol)
                          & ((theirs["boxes"] - mine["boxes"][k]).abs().amax(dim=1) <= tol * scale))
            assert candidates.any(), f"detection {k} (label {mine['labels'][k]}) is not among torchvision's"


def grad_of(model: torch.nn.Module, name: str) -> torch.Tensor:
    return dict(model.named_parameters())[name].grad


# --- parity with torchvision --------------------------------------------------------------------------------------

@pytest.mark.heavy
def test_converted_torchvision_weights_give_torchvision_detections():
    # Two images of different sizes and aspect ratios, resized to a shorter side of 256 (at most 320) by both models.
    generator = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 240, 300, generator=generator), torch.rand(3, 280, 200, generator=generator)]
    torch.manual_seed(0)
    reference = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None,
                                                                    min_size=256, max_size=320)
    randomize_weights(reference)
    calibrate_heads(reference, images)
    ours = paperzoo.create_model("retinanet_resnet50_fpn", min_size=256, max_size=320).eval()
    load_weights(ours, reference, source="torchvision")
    with torch.no_grad():
        expected, actual = reference.eval()(images), ours(images)
    assert all(len(d["boxes"]) == ours.detections_per_img for d in expected), "calibration: fill all 300"
    assert_same_detections(actual, expected)


@pytest.mark.heavy
def test_training_losses_and_gradients_equal_torchvision():
    # torchvision's own initialisation (the prior, σ = 0.01 heads): the losses of a model at the start of training.
    # Three images, one without objects; trainable BatchNorm uses the batch's statistics in both models.
    images, targets = make_shapes_dataset(3, size=96, num_classes=4, seed=0)
    targets[-1] = {key: value[:0] for key, value in targets[-1].items()}
    torch.manual_seed(0)
    reference = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None,
                                                                    num_classes=5, min_size=(144, 160), max_size=200)
    ours = paperzoo.create_model("retinanet_resnet50_fpn", num_classes=5, min_size=(144, 160), max_size=200)
    load_weights(ours, reference, source="torchvision")
    torch.manual_seed(3)  # the transform draws each image's shorter side from min_size: the same draws
    expected = reference.train()(images, targets)
    torch.manual_seed(3)
    actual = ours.train()(images, targets)
    assert set(actual) == set(expected) == {"classification", "bbox_regression"}
    for key in expected:
        assert_close_rel(actual[key], expected[key])
    sum(expected.values()).backward()
    sum(actual.values()).backward()
    for theirs, mine in [("head.classification_head.cls_logits.weight", "classification_subnet.class_logits.weight"),
                         ("head.regression_head.conv.0.0.weight", "box_subnet.tower.0.conv.weight"),
                         ("backbone.fpn.extra_blocks.p6.weight", "backbone.fpn.extra_blocks.p6.weight"),
                         ("backbone.body.conv1.weight", "backbone.body.conv1.conv.weight")]:
        assert_close_rel(grad_of(ours, mine), grad_of(reference, theirs), rtol=1e-4)


def test_resnet18_with_p6_from_c5_equals_torchvision():
    # The paper's P6 (from C5) is torchvision's LastLevelP6P7(C5 width, 256), as in its v2 builder; on ResNet-18.
    torch.manual_seed(0)
    tv_backbone = _resnet_fpn_extractor(torchvision.models.resnet18(), 5, returned_layers=[2, 3, 4],
                                        extra_blocks=TVLastLevelP6P7(512, 256))
    reference = TVRetinaNet(tv_backbone, num_classes=4, min_size=128, max_size=160)
    ours = RetinaNet(num_classes=4, backbone="resnet18", p6_input="c5", min_size=128, max_size=160)
    assert count_parameters(ours) == count_parameters(reference)
    randomize_weights(reference)
    generator = torch.Generator().manual_seed(2)
    images = [torch.rand(3, 128, 150, generator=generator), torch.rand(3, 100, 90, generator=generator)]
    calibrate_heads(reference, images)
    load_weights(ours, reference, source="torchvision")
    with torch.no_grad():
        assert_same_detections(ours.eval()(images), reference.eval()(images))
    _, targets = make_shapes_dataset(2, size=64, num_classes=3, seed=4)
    torch.manual_seed(1)
    expected = reference.train()(images, targets)
    torch.manual_seed(1)
    actual = ours.train()(images, targets)
    for key in expected:
        assert_close_rel(actual[key], expected[key])


def test_frozen_batchnorm_configuration_counts_torchvisions_pretrained_builder():
    # torchvision with pretrained weights: FrozenBatchNorm2d and trainable_backbone_layers=3. Its count is the
    # weights' metadata; which parameters train is torchvision's builder with that norm layer (built on meta).
    with torch.device("meta"):
        ours = paperzoo.create_model("retinanet_resnet50_fpn", frozen_batchnorm=True, trainable_backbone_layers=3)
        body = torchvision.models.resnet50(norm_layer=TVFrozenBatchNorm2d)
        reference = TVRetinaNet(_resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4],
                                                      extra_blocks=TVLastLevelP6P7(256, 256)), num_classes=91)
    assert count_parameters(ours) == tv_retinanet.RetinaNet_ResNet50_FPN_Weights.COCO_V1.meta["num_params"]
    assert count_parameters(ours, trainable_only=True) == count_parameters(reference, trainable_only=True)


# --- the paper's parts ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 0.0), (-1.0, 1.5), (0.75, 5.0)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_focal_loss_equals_torchvision(alpha, gamma, reduction):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 7, generator=generator) * 4
    targets = (torch.rand(200, 7, generator=generator) < 0.1).float()
    assert_close_rel(focal_loss(logits, targets, alpha, gamma, reduction),
                     sigmoid_focal_loss(logits, targets, alpha, gamma, reduction))


def test_focal_loss_down_weights_well_classified_examples_as_the_paper_says():
    # §3.2: "with γ = 2, an example classified with p_t = 0.9 would have 100× lower loss compared with CE and with
    # p_t ≈ 0.968 it would have 1000× lower loss". Without α, FL / CE = (1 - p_t)^γ.
    p_t = torch.tensor([0.9, 0.968])
    for target in (1.0, 0.0):  # p_t = p for a positive, 1 - p for a negative
        p = p_t if target == 1.0 else 1 - p_t
        logits, targets = torch.logit(p.double()), torch.full_like(p, target, dtype=torch.float64)
        cross_entropy = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        ratio = cross_entropy / focal_loss(logits, targets, alpha=-1, gamma=2.0, reduction="none")
        assert ratio[0] == pytest.approx(100.0) and ratio[1] == pytest.approx(1000.0, rel=0.03)
    # α = 0.25 weighs a positive's loss by 0.25 and a negative's by 0.75 (§3.1, §5.1).
    logit = torch.tensor([0.3])
    assert focal_loss(logit, torch.ones(1), 0.25, 2.0) == pytest.approx(0.25 * focal_loss(logit, torch.ones(1), -1))
    assert focal_loss(logit, torch.zeros(1), 0.25, 2.0) == pytest.approx(0.75 * focal_loss(logit, torch.zeros(1), -1))


class NarrowResNetFPN(torch.nn.Module):
    """A narrow ResNet-18 (widths 16, 32, 64, 128) under a 32-channel FPN with P6, P7 from P5: the pyramid that
    ``ResNetFPNBackbone`` builds, at the width of a test (it passes no width arguments to the ResNet)."""

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 128), out_channels: int = 32) -> None:
        super().__init__()
        self.body = paperzoo.create_model("resnet18", features_only=True, out_indices=(1, 2, 3), stem_width=widths[0],
                                          stage_widths=widths)
        self.fpn = FeaturePyramidNetwork([info.channels for info in self.body.feature_info], out_channels,
                                         extra_blocks=LastLevelP6P7(out_channels, out_channels))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), feature) for i, feature in enumerate(self.body(x))))


def small_retinanet(**kwargs) -> RetinaNet:
    """RetinaNet with the real subnets (four 3×3 convolutions each, 32 channels instead of 256), focal loss,
    matching and post-processing on a :class:`NarrowResNetFPN`, for 64-pixel images kept at 64 pixels by the
    transform; anchors of 16…256 pixels on P3…P7 (the paper's 32…512 at half the scale: the objects are 16–44
    pixels)."""
    settings = {"anchor_base_sizes": (16, 32, 64, 128, 256), "min_size": 64, "max_size": 64, **kwargs}
    return RetinaNet(backbone=NarrowResNetFPN(), fpn_channels=32, **settings)


def test_prior_probability_initialisation():
    torch.manual_seed(0)
    model = small_retinanet(num_classes=3).eval()
    prior = model.classification_subnet.class_logits.bias
    # §3.3: b = -log((1 - π)/π) with π = 0.01, so that sigmoid(b) = π.
    assert prior_bias(0.01) == pytest.approx(-math.log(99))
    assert torch.allclose(prior, torch.full_like(prior, -math.log(99)))
    assert torch.allclose(torch.sigmoid(prior), torch.full_like(prior, 0.01))
    # §3.3: "All new conv layers except the final one in the RetinaNet subnets are initialized with bias b = 0 and
    # a Gaussian weight fill with σ = 0.01" (and the box output too, in the paper's Detectron code and torchvision).
    for subnet in (model.classification_subnet, model.box_subnet):
        for name, parameter in subnet.named_parameters():
            if name.endswith("weight"):
                assert parameter.std().item() == pytest.approx(0.01, rel=0.1), name
            elif parameter is not prior:
                assert torch.all(parameter == 0), name
    # So every anchor starts at confidence ≈ π: the tower's σ = 0.01 weights leave the logits at nearly b.
    logits = {}
    model.classification_subnet.register_forward_hook(lambda module, args, output: logits.update(out=output))
    images, _ = make_shapes_dataset(2, size=64, seed=0)
    with torch.no_grad():
        model(images)
    assert torch.allclose(torch.sigmoid(logits["out"]), torch.full_like(logits["out"], 0.01), atol=1e-3)


def test_anchors_are_torchvisions_nine_per_position_on_p3_to_p7():
    model = paperzoo.create_model("retinanet_resnet50_fpn", min_size=128, max_size=128)
    # torchvision's default RetinaNet anchors: 32…512 at 2^0, 2^(1/3), 2^(2/3) (truncated), ratios 0.5, 1, 2.
    reference = tv_retinanet._default_anchorgen()
    assert model.anchor_generator.sizes == reference.sizes == anchor_sizes_per_level((32, 64, 128, 256, 512))
    assert model.anchor_generator.aspect_ratios == reference.aspect_ratios
    assert model.anchor_generator.num_anchors_per_location() == [9] * 5  # §4: A = 3 scales × 3 ratios
    levels = {}
    model.classification_subnet.register_forward_hook(lambda module, args, output: levels.update(maps=args[0]))
    with torch.no_grad():
        model.eval()([torch.rand(3, 128, 128)])
    # P3…P7 at strides 8…128 (§4: "levels P3 to P7 ... P_l has resolution 2^l lower than the input").
    assert [tuple(level.shape[-2:]) for level in levels["maps"]] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def test_matching_is_the_papers_iou_thresholds():
    # §4: IoU >= 0.5 foreground, [0, 0.4) background, [0.4, 0.5) ignored; each ground truth also claims its best
    # anchor (torchvision's low-quality matches). Anchors built so that their IoU with the box is known exactly.
    model = small_retinanet(num_classes=3)
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    anchors = torch.tensor([
        [0.0, 0.0, 10.0, 16.0],  # IoU 100 / 160 = 0.625: positive
        [0.0, 0.0, 10.0, 22.0],  # IoU 100 / 220 = 0.4545: ignored
        [0.0, 0.0, 10.0, 26.0],  # IoU 100 / 260 = 0.385: negative
        [50.0, 50.0, 60.0, 60.0],  # no overlap: negative
    ])
    matched = model.match(anchors, {"boxes": box, "labels": torch.tensor([1])})
    assert matched.tolist() == [0, Matcher.BETWEEN_THRESHOLDS, Matcher.BELOW_LOW_THRESHOLD,
                                Matcher.BELOW_LOW_THRESHOLD]
    # A box whose best anchor has IoU 0.385 still gets that anchor as a positive.
    matched = model.match(anchors[2:], {"boxes": box, "labels": torch.tensor([1])})
    assert matched.tolist() == [0, Matcher.BELOW_LOW_THRESHOLD]


def test_an_image_without_objects_makes_every_anchor_a_negative():
    torch.manual_seed(0)
    model = small_retinanet(num_classes=3).train()
    images, _ = make_shapes_dataset(1, size=64, seed=0)
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    logits = {}
    model.classification_subnet.register_forward_hook(lambda module, args, output: logits.update(out=output))
    losses = model(images, empty)
    # Every anchor counts as background (target 0 for every class), normalised by max(1, #positives) = 1.
    expected = sigmoid_focal_loss(logits["out"][0], torch.zeros_like(logits["out"][0]), reduction="sum")
    assert_close_rel(losses["classification"], expected)
    assert losses["bbox_regression"] == 0
    sum(losses.values()).backward()
    assert model.classification_subnet.class_logits.weight.grad.abs().sum() > 0


def test_bad_input_and_targets_raise_value_error():
    with torch.device("meta"):  # the checks run before any computation
        model = paperzoo.create_model("retinanet_resnet50_fpn", num_classes=5).train()
    images, targets = make_shapes_dataset(2, size=64, num_classes=4, seed=0)
    box = targets[0]["boxes"][:1]

    def first(**changes):
        edited = [dict(t) for t in targets]
        edited[0] = {"boxes": box, "labels": targets[0]["labels"][:1], **changes}
        return edited

    cases = {
        "an empty list": ([], targets, "empty list"),
        "wrong channel count": ([torch.rand(1, 64, 64)] * 2, targets, "1 channel;"),
        "no targets in training": (images, None, "got None"),
        "x2 < x1": (images, first(boxes=box[:, [2, 1, 0, 3]]), "x2 <= x1"),
        "a box outside the image": (images, first(boxes=box + torch.tensor([0.0, 0.0, 64.0, 0.0])), "outside"),
        "label 0, the unused background index": (images, first(labels=torch.tensor([0])), "background"),
        "label = num_classes": (images, first(labels=torch.tensor([5])), "outside [1, 5)"),
        "boxes of shape (K, 5)": (images, first(boxes=torch.zeros(1, 5)), "(K, 4)"),
    }
    for reason, (x, y, says) in cases.items():
        with pytest.raises(ValueError) as info:
            model(x, y)
        message = str(info.value)
        assert message.startswith("retinanet_resnet50_fpn expects") and says in message, f"{reason}: {message}"


# Learning: tests/test_train_detection.py trains small_retinanet on the generated shapes through
# `paperzoo train`'s own loop (COCOeval mAP on held-out images).
