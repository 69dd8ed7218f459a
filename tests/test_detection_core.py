"""The shared detection parts (models/detection/{transform,boxes,anchors,fpn,backbone,evaluation}.py, the input
checks) against torchvision's counterparts, and mean average precision against a brute-force implementation
written here independently.

Every expected value comes from torchvision (its ``models/detection`` modules, built or called on the same
inputs and weights) or from the brute-force mAP below; none is hard-coded.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict

import pytest
import torch
import torchvision
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as tv_resnet_fpn_backbone
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d as TVFrozenBatchNorm2d
from torchvision.ops import box_iou
from torchvision.ops import feature_pyramid_network as tv_fpn

import paperzoo
from conftest import assert_close_rel, randomize_batchnorm, randomize_weights
from detection_data import TINY_DETECTORS, TinyDetector, make_shapes_dataset, tiny_detector_macs
from paperzoo import cli, diagram, registry
from paperzoo.layers import check_detection_targets, check_image_list
from paperzoo.measure import count_parameters, measure_gmacs
from paperzoo.models.detection.anchors import AnchorGenerator
from paperzoo.models.detection.backbone import ResNetFPNBackbone
from paperzoo.models.detection.boxes import (
    BalancedSampler,
    BoxCoder,
    FrozenBatchNorm2d,
    Matcher,
    freeze_batchnorm,
)
from paperzoo.models.detection.evaluation import mean_average_precision
from paperzoo.models.detection.fpn import FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7
from paperzoo.models.detection.transform import DetectionTransform, ImageBatch


def random_boxes(n: int, size: float = 100.0, generator: torch.Generator | None = None) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size
    wh = 1 + torch.rand(n, 2, generator=generator) * size / 2
    return torch.cat([xy, xy + wh], dim=1)


# --- transform ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("training", [False, True])
def test_transform_equals_generalized_rcnn_transform(training):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ours = DetectionTransform((96, 112, 128), 160, mean, std).train(training)
    reference = GeneralizedRCNNTransform((96, 112, 128), 160, mean, std).train(training)
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 70, 93, generator=generator), torch.rand(3, 120, 61, generator=generator)]
    targets = []
    for image in images:
        h, w = image.shape[-2:]
        boxes = torch.tensor([[3.0, 5.0, w - 10.0, h - 2.0], [10.0, 12.0, 30.0, 40.0]])
        masks = (torch.rand(2, h, w, generator=generator) > 0.5).to(torch.uint8)
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks})
    originals = [{k: v.clone() for k, v in t.items()} for t in targets]
    torch.manual_seed(3)
    batch, new_targets = ours(images, targets)
    torch.manual_seed(3)
    expected, expected_targets = reference(images, targets)
    assert isinstance(batch, ImageBatch)
    assert batch.image_sizes == expected.image_sizes
    assert torch.equal(batch.tensors, expected.tensors)
    assert batch.tensors.shape[-1] % 32 == 0 and batch.tensors.shape[-2] % 32 == 0
    for got, want, original, given in zip(new_targets, expected_targets, originals, targets, strict=True):
        assert got.keys() == want.keys()
        for key in got:
            assert torch.equal(got[key], want[key]), key
            assert torch.equal(given[key], original[key]), "the caller's targets must not change"

    detections = [{"boxes": random_boxes(5), "scores": torch.rand(5), "labels": torch.ones(5, dtype=torch.int64)}
                  for _ in images]
    sizes = [tuple(image.shape[-2:]) for image in images]
    got = ours.postprocess([dict(d) for d in detections], batch.image_sizes, sizes)
    want = reference.postprocess([dict(d) for d in detections], expected.image_sizes, sizes)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


def test_transform_fixed_size_equals_torchvision():
    ours = DetectionTransform(300, 300, [0.5] * 3, [0.5] * 3, size_divisible=1, fixed_size=(300, 200)).eval()
    reference = GeneralizedRCNNTransform(300, 300, [0.5] * 3, [0.5] * 3, size_divisible=1,
                                         fixed_size=(300, 200)).eval()
    images = [torch.rand(3, 50, 80), torch.rand(3, 90, 40)]
    batch, _ = ours(images)
    expected, _ = reference(images)
    assert batch.image_sizes == expected.image_sizes == [(200, 300), (200, 300)]
    assert torch.equal(batch.tensors, expected.tensors)


# --- box coding, matching, sampling ---------------------------------------------------------------------------

@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder_equals_torchvision(weights):
    generator = torch.Generator().manual_seed(0)
    ours, reference = BoxCoder(weights), tv_utils.BoxCoder(weights)
    gt = [random_boxes(7, generator=generator), random_boxes(4, generator=generator)]
    anchors = [random_boxes(7, generator=generator), random_boxes(4, generator=generator)]
    encoded = ours.encode(gt, anchors)
    for got, want in zip(encoded, reference.encode(gt, anchors), strict=True):
        assert torch.equal(got, want)
    codes = torch.randn(11, 3 * 4, generator=generator)  # class-specific: 3 classes
    codes[0, 2] = 20.0  # beyond bbox_xform_clip: clamped
    decoded = ours.decode(codes, anchors)
    assert decoded.shape == (11, 3, 4)
    assert torch.equal(decoded, reference.decode(codes, anchors))
    assert torch.equal(ours.decode_single(codes, torch.cat(anchors)),
                       reference.decode_single(codes, torch.cat(anchors)))
    # decode inverts encode (eq. 2)
    roundtrip = ours.decode(torch.cat(encoded), anchors)[:, 0]
    torch.testing.assert_close(roundtrip, torch.cat(gt), rtol=0, atol=1e-3)


@pytest.mark.parametrize("low_quality", [False, True])
def test_matcher_equals_torchvision(low_quality):
    generator = torch.Generator().manual_seed(1)
    gt, anchors = random_boxes(6, generator=generator), random_boxes(300, generator=generator)
    anchors[:3] = gt[0]  # ties for the best anchor of ground truth 0
    iou = box_iou(gt, anchors)
    ours = Matcher(0.7, 0.3, allow_low_quality_matches=low_quality)(iou)
    expected = tv_utils.Matcher(0.7, 0.3, allow_low_quality_matches=low_quality)(iou)
    assert torch.equal(ours, expected)
    assert set(ours.unique().tolist()) >= {-1, -2, 0}
    assert Matcher.BELOW_LOW_THRESHOLD == -1 and Matcher.BETWEEN_THRESHOLDS == -2
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        Matcher(0.5, 0.4)(torch.zeros(0, 10))


def test_balanced_sampler_draws_what_torchvision_draws():
    generator = torch.Generator().manual_seed(2)
    labels = [torch.randint(-1, 3, (500,), generator=generator), torch.randint(-1, 2, (80,), generator=generator)]
    torch.manual_seed(7)
    positives, negatives = BalancedSampler(256, 0.25)(labels)
    torch.manual_seed(7)
    expected_positives, expected_negatives = tv_utils.BalancedPositiveNegativeSampler(256, 0.25)(labels)
    for a, b in zip(positives + negatives, expected_positives + expected_negatives, strict=True):
        assert a.dtype == torch.uint8 and torch.equal(a, b)
    # at most 25% of 256 positives; negatives fill the rest, as many as there are
    assert int(positives[0].sum()) == 64 and int(negatives[0].sum()) == min(int((labels[0] == 0).sum()), 192)
    assert int(positives[1].sum()) == min(int((labels[1] >= 1).sum()), 64)


def test_frozen_batchnorm_equals_torchvision_and_loads_a_batchnorm():
    bn = randomize_batchnorm(torch.nn.BatchNorm2d(8, eps=1e-5))
    frozen = FrozenBatchNorm2d(8)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped
    reference = TVFrozenBatchNorm2d(8)
    reference.load_state_dict(bn.state_dict())
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(frozen(x), reference(x))
    torch.testing.assert_close(frozen(x), bn.eval()(x), rtol=1e-5, atol=1e-6)
    assert list(frozen.parameters()) == [] and set(frozen.state_dict()) == set(reference.state_dict())

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), randomize_batchnorm(torch.nn.BatchNorm2d(8)),
                              torch.nn.Sequential(torch.nn.BatchNorm2d(8)))
    expected = net.eval()(torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(0)))
    freeze_batchnorm(net)
    assert isinstance(net[1], FrozenBatchNorm2d) and isinstance(net[2][0], FrozenBatchNorm2d)
    torch.testing.assert_close(net.train()(torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))),
                               expected, rtol=1e-5, atol=1e-6)


# --- anchors, FPN, backbone -----------------------------------------------------------------------------------

def test_anchor_generator_equals_torchvision():
    sizes = ((32,), (64,), (128,), (256,), (512,))
    ratios = ((0.5, 1.0, 2.0),) * 5
    ours, reference = AnchorGenerator(sizes, ratios), TVAnchorGenerator(sizes, ratios)
    tensors = torch.zeros(2, 3, 224, 320)
    maps = [torch.zeros(2, 8, 224 // s, 320 // s) for s in (4, 8, 16, 32)] + [torch.zeros(2, 8, 4, 5)]
    got = ours(ImageBatch(tensors, [(224, 300), (200, 320)]), maps)
    expected = reference(ImageList(tensors, [(224, 300), (200, 320)]), maps)
    assert ours.num_anchors_per_location() == reference.num_anchors_per_location() == [3] * 5
    assert len(got) == 2 and all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))

    retina_sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512))
    ours, reference = AnchorGenerator(retina_sizes, ratios), TVAnchorGenerator(retina_sizes, ratios)
    assert torch.equal(ours(ImageBatch(tensors, [(224, 320)] * 2), maps)[0],
                       reference(ImageList(tensors, [(224, 320)] * 2), maps)[0])


@pytest.mark.parametrize("extra", ["pool", "p6p7_from_p5", "p6p7_from_c5"])
def test_fpn_equals_torchvision(extra):
    in_channels = [8, 16, 32]
    if extra == "pool":
        ours_extra, reference_extra = LastLevelMaxPool(), tv_fpn.LastLevelMaxPool()
    else:
        c = 12 if extra == "p6p7_from_p5" else 32
        ours_extra, reference_extra = LastLevelP6P7(c, 12), tv_fpn.LastLevelP6P7(c, 12)
    torch.manual_seed(0)
    reference = tv_fpn.FeaturePyramidNetwork(in_channels, 12, extra_blocks=reference_extra)
    ours = FeaturePyramidNetwork(in_channels, 12, extra_blocks=ours_extra)
    randomize_weights(reference)
    # torchvision's inner_blocks.<i>.0 / layer_blocks.<i>.0 are our lateral_convs.<i> / output_convs.<i>
    ours.load_state_dict({k.replace("inner_blocks", "lateral_convs").replace("layer_blocks", "output_convs")
                          .replace(".0.", "."): v for k, v in reference.state_dict().items()})
    generator = torch.Generator().manual_seed(1)
    features = OrderedDict([("a", torch.randn(2, 8, 33, 41, generator=generator)),
                            ("b", torch.randn(2, 16, 17, 21, generator=generator)),
                            ("c", torch.randn(2, 32, 9, 11, generator=generator))])
    got, expected = ours(features), reference(features)
    assert list(got) == list(expected)
    for key in expected:
        assert_close_rel(got[key], expected[key])


@pytest.mark.parametrize("variant", ["faster_rcnn", "retinanet"])
def test_resnet_fpn_backbone_equals_torchvision(variant):
    """ResNet-50-FPN with torchvision's weights converted by load_weights(source="torchvision"): the same pyramid,
    the same frozen layers. Small images keep it cheap."""
    kwargs = {} if variant == "faster_rcnn" else {
        "returned_layers": [2, 3, 4], "extra_blocks": tv_fpn.LastLevelP6P7(256, 256)}
    torch.manual_seed(0)
    reference = tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3,
                                       norm_layer=TVFrozenBatchNorm2d, **kwargs)
    with torch.no_grad():  # frozen BatchNorms: random statistics, so that a misplaced one shows
        generator = torch.Generator().manual_seed(0)
        for module in reference.modules():
            if isinstance(module, TVFrozenBatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    ours = ResNetFPNBackbone("resnet50", trainable_layers=3, **(
        {} if variant == "faster_rcnn" else {"returned_layers": (2, 3, 4), "extra_blocks": LastLevelP6P7(256, 256)}))
    paperzoo.load_weights(ours, reference.state_dict(), source="torchvision")
    assert ours.out_channels == reference.out_channels == 256
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in reference.parameters() if p.requires_grad) < count
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, expected = ours.eval()(x), reference.eval()(x)
    assert list(got) == list(expected) == (["0", "1", "2", "3", "pool"] if variant == "faster_rcnn"
                                           else ["0", "1", "2", "p6", "p7"])
    for key in expected:
        assert_close_rel(got[key], expected[key])


def test_backbone_without_frozen_batchnorm_counts_as_torchvisions_unpretrained_builder():
    """torchvision's detection builders without pretrained weights keep nn.BatchNorm2d and train every layer."""
    with torch.device("meta"):
        ours = ResNetFPNBackbone("resnet50", trainable_layers=5, frozen_batchnorm=False)
        reference = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).backbone
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    assert all(p.requires_grad for p in ours.parameters())
    converted = paperzoo.interop.convert_state_dict(ours, reference.state_dict(), "torchvision")
    assert converted.keys() == ours.state_dict().keys()


def test_backbone_converter_works_under_a_detectors_prefix():
    """A detector's converter applies resnet_fpn_backbone to the whole state_dict: under "backbone." the keys map
    as without the prefix, and the heads' keys pass through for the detector's own rules."""
    from paperzoo.interop.torchvision import resnet_fpn_backbone

    with torch.device("meta"):
        ours = ResNetFPNBackbone("resnet18", returned_layers=(2, 3, 4), extra_blocks=LastLevelP6P7(256, 256))
        reference = tv_resnet_fpn_backbone(backbone_name="resnet18", weights=None, returned_layers=[2, 3, 4],
                                           extra_blocks=tv_fpn.LastLevelP6P7(256, 256))
    bare = resnet_fpn_backbone(reference.state_dict(), ours)
    assert bare.keys() == ours.state_dict().keys()
    prefixed = {f"backbone.{k}": v for k, v in reference.state_dict().items()} | {"head.cls.weight": torch.zeros(1)}
    converted = resnet_fpn_backbone(prefixed, ours)
    assert converted.keys() == {f"backbone.{k}" for k in bare} | {"head.cls.weight"}


# --- mean average precision -----------------------------------------------------------------------------------

def brute_force_map(predictions, targets, iou_threshold=0.5):
    """An independent VOC all-point mAP: plain Python over lists, IoU by hand, precision envelope by a max over the
    tail at every recall step, AP as a sum of rectangles."""
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    classes = sorted({label for t in targets for label in t["labels"].tolist()})
    aps = []
    for cls in classes:
        gts = {i: [b for b, lab in zip(t["boxes"].tolist(), t["labels"].tolist(), strict=True) if lab == cls]
               for i, t in enumerate(targets)}
        total = sum(len(v) for v in gts.values())
        dets = [(s, i, b) for i, p in enumerate(predictions)
                for b, s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(), strict=True)
                if lab == cls]
        dets.sort(key=lambda d: -d[0])  # Python's sort is stable: ties keep image, then detection order
        used = {i: [False] * len(v) for i, v in gts.items()}
        flags = []
        for _, i, box in dets:
            overlaps = [iou(box, g) for g in gts[i]]
            if overlaps and max(overlaps) >= iou_threshold and not used[i][overlaps.index(max(overlaps))]:
                used[i][overlaps.index(max(overlaps))] = True
                flags.append(1)
            else:
                flags.append(0)
        recalls, precisions, tp = [], [], 0
        for rank, flag in enumerate(flags, start=1):
            tp += flag
            recalls.append(tp / total)
            precisions.append(tp / rank)
        ap, previous_recall = 0.0, 0.0
        for k, recall in enumerate(recalls):
            if recall > previous_recall:
                ap += (recall - previous_recall) * max(precisions[k:])
                previous_recall = recall
        aps.append(ap)
    return sum(aps) / len(aps)


def noisy_predictions(targets, seed):
    """Detections near the ground truth, with misses, duplicates, wrong labels and false alarms."""
    generator = torch.Generator().manual_seed(seed)
    predictions = []
    for t in targets:
        boxes = t["boxes"] + torch.randn(t["boxes"].shape, generator=generator) * 2
        labels = t["labels"].clone()
        flip = torch.rand(len(labels), generator=generator) < 0.2
        labels[flip] = 3 - labels[flip]
        extra = random_boxes(2, size=60.0, generator=generator)
        boxes = torch.cat([boxes, boxes[:1] + 1, extra])
        labels = torch.cat([labels, labels[:1], torch.randint(1, 3, (2,), generator=generator)])
        scores = torch.rand(len(boxes), generator=generator)
        scores[:2] = scores[0]  # a tie
        keep = torch.rand(len(boxes), generator=generator) > 0.15
        predictions.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
    return predictions


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("iou_threshold", [0.5, 0.75])
def test_mean_average_precision_equals_brute_force(seed, iou_threshold):
    _, targets = make_shapes_dataset(12, num_classes=2, seed=seed)
    predictions = noisy_predictions(targets, seed)
    got = mean_average_precision(predictions, targets, iou_threshold=iou_threshold)
    expected = brute_force_map(predictions, targets, iou_threshold=iou_threshold)
    assert 0.05 < expected < 0.95, "the case should be neither trivial nor hopeless"
    assert got == pytest.approx(expected, abs=1e-9)


def test_mean_average_precision_limits():
    _, targets = make_shapes_dataset(6, num_classes=3)
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
               for t in targets]
    assert mean_average_precision(perfect, targets) == 1.0
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
             for _ in targets]
    assert mean_average_precision(empty, targets) == 0.0
    with pytest.raises(ValueError, match="one dict per image"):
        mean_average_precision(perfect[:-1], targets)


# --- the synthetic data set -----------------------------------------------------------------------------------

def test_shapes_dataset_is_valid_and_reproducible():
    images, targets = make_shapes_dataset(10, size=64, num_classes=4, seed=3, with_masks=True)
    again, _ = make_shapes_dataset(10, size=64, num_classes=4, seed=3, with_masks=True)
    assert all(torch.equal(a, b) for a, b in zip(images, again, strict=True))
    check_image_list(images, name="data")
    check_detection_targets(targets, images, name="data", num_classes=5, needs_masks=True)
    for t in targets:
        for box, mask in zip(t["boxes"], t["masks"], strict=True):  # each box is its mask's tight box
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


# --- input checks -----------------------------------------------------------------------------------------------

def _target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}


@pytest.mark.parametrize(("images", "says"), [
    ([], "an empty list"),
    (torch.zeros(2, 3, 8, 8), "pass list(x)"),
    ([torch.zeros(4, 8, 8)], "4 channels"),
    ([torch.zeros(8, 8, 3)], "x.permute(2, 0, 1)"),
    ([torch.zeros(1, 3, 8, 8)], "a batch dimension"),
    ([torch.zeros(3, 8, 8, dtype=torch.uint8)], "x.float() / 255"),
    ("image.png", "pass a list of image tensors"),
])
def test_check_image_list_says_what_is_wrong(images, says):
    with pytest.raises(ValueError) as info:
        check_image_list(images, name="det", in_chans=3)
    message = str(info.value)
    assert message.startswith("det expects a list of float tensors of shape (3, H, W)") and says in message


@pytest.mark.parametrize(("targets", "says"), [
    (None, "needs targets"),
    ([], "0 targets for 1 images"),
    ([_target([[5, 5, 2, 10]], [1])], "x2 <= x1 or y2 <= y1"),
    ([_target([[5, 5, 20, 5]], [1])], "x2 <= x1 or y2 <= y1"),
    ([_target([[5, 5, 61, 10]], [1])], "outside the 50x60 image"),
    ([_target([[-1, 5, 20, 10]], [1])], "outside the 50x60 image"),
    ([_target([[5, 5, 20, 10]], [0])], "label 0 outside [1, 3)"),
    ([_target([[5, 5, 20, 10]], [3])], "label 3 outside [1, 3)"),
    ([{"boxes": torch.zeros(1, 3), "labels": torch.ones(1, dtype=torch.int64)}], "'boxes' of shape (1, 3)"),
    ([_target([[5, 5, 20, 10]], [1, 2])], "one label per box"),
    ([{"boxes": torch.zeros(0, 4)}], "no 'labels'"),
])
def test_check_detection_targets_says_what_is_wrong(targets, says):
    images = [torch.rand(3, 50, 60)]
    with pytest.raises(ValueError) as info:
        check_detection_targets(targets, images, name="det", num_classes=3)
    message = str(info.value)
    assert message.startswith("det expects targets") and "(K, 4)" in message and says in message, message


def test_check_detection_targets_accepts_an_image_without_objects_and_checks_masks():
    images = [torch.rand(3, 50, 60), torch.rand(3, 40, 30)]
    targets = [_target([], []), _target([[0, 0, 30, 40]], [2])]
    check_detection_targets(targets, images, name="det", num_classes=3)
    check_detection_targets([_target([[0, 0, 30, 40]], [0])], images[1:], name="det", num_classes=3, first_label=0)
    targets[1]["masks"] = torch.zeros(1, 40, 31, dtype=torch.uint8)
    targets[0]["masks"] = torch.zeros(0, 50, 60, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"'masks' of shape \(1, 40, 31\).*\(1, 40, 30\)"):
        check_detection_targets(targets, images, name="det", num_classes=3, needs_masks=True)


# --- measure, CLI and diagrams with a detector (the tiny one, registered for the test) ----------------------------

@pytest.fixture
def tiny(monkeypatch):
    """Register the tiny detector and instance segmenter, with their true parameter counts, for one test."""
    for name, (builder, card) in TINY_DETECTORS.items():
        with torch.device("meta"):
            params = count_parameters(builder())
        entry = registry._Entry(builder, dataclasses.replace(card, params=params))
        monkeypatch.setitem(registry._REGISTRY, name, entry)
    return list(TINY_DETECTORS)


def test_measure_gmacs_of_a_detector_on_a_real_device_counts_the_whole_forward_pass():
    model = TinyDetector(with_masks=True).eval()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    assert measure_gmacs(model, images) * 1e9 == tiny_detector_macs(with_masks=True)  # per image
    with pytest.raises(ValueError, match="expects a list"):  # any other failure still surfaces
        measure_gmacs(model, [])


def test_cli_run_describes_the_detections_per_image(tiny, capsys):
    assert cli.main(["run", "tiny_instance_segmenter", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "input [(3, 64, 64), (3, 64, 64)] → detections for 2 image(s)" in out
    lines = re.findall(r"image (\d): (\d+) detections?, top scores ([\d., ()a-z]+); masks \((\d+), 1, 64, 64\)", out)
    assert [line[0] for line in lines] == ["0", "1"], out
    for _, count, scores, mask_count in lines:
        assert count == mask_count and len(re.findall(r"0\.\d\d \(label [12]\)", scores)) == min(3, int(count))


def test_cli_tour_and_info_show_a_detector(tiny, capsys):
    assert cli.main(["tour", "tiny_*"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"\[\d+ det\., top 0\.\d\d\]", out)) == 2, out
    assert cli.main(["info", "tiny_detector", "--measure"]) == 0
    out = capsys.readouterr().out
    assert f"{tiny_detector_macs() / 1e9:.3f} measured" in out and "dense network" in out


def test_describe_detections_counts_and_ranks():
    output = [{"boxes": torch.zeros(3, 4), "scores": torch.tensor([0.2, 0.9, 0.5]), "labels": torch.tensor([4, 7, 1])},
              {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}]
    assert cli.describe_detections(output, top=2) == [
        "image 0: 3 detections, top scores 0.90 (label 7), 0.50 (label 1)", "image 1: 0 detections"]
    assert cli.describe_result(output) == "[3 det., top 0.90; 0 det.]"


def test_a_detector_diagram_is_traced_through_its_value_dependent_steps(tiny):
    """On the meta device the score threshold and NMS are taken to keep every box (the note says so), so the
    drawing reaches the output; a forward pass that then reads values back (the tiny segmenter's mask pasting
    multiplies box corners by a CPU tensor) is drawn up to its first value-dependent step instead, as before."""
    network, *_ = diagram.architecture_diagrams("tiny_detector")
    assert network.traced and network.note == diagram.KEPT_EVERY_BOX
    assert network.boxes >= 5 and any(n.kind == "output" for n in network.graph.nodes)
    segmenter, *_ = diagram.architecture_diagrams("tiny_instance_segmenter")
    assert segmenter.traced and "data-dependent step" in segmenter.note and "failed" not in segmenter.note


def test_only_data_dependent_steps_end_a_meta_measurement():
    from torchvision.ops import nms

    from paperzoo.measure import stops_at_data_dependence

    scores, boxes = torch.zeros(5, device="meta"), torch.zeros(5, 4, device="meta")
    for step in (lambda: scores[scores > 0], lambda: nms(boxes, scores, 0.5), lambda: scores.sum().item(),
                 lambda: scores.unique()):
        with pytest.raises((NotImplementedError, RuntimeError)) as info:
            step()
        assert stops_at_data_dependence(info.value), str(info.value)
    assert not stops_at_data_dependence(RuntimeError("not on the meta device"))
    assert not stops_at_data_dependence(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
