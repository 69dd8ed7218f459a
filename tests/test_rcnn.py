"""Faster R-CNN and Mask R-CNN (models/detection/{faster_rcnn,mask_rcnn,rpn,roi_heads}.py).

Parity with torchvision's ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn`` (built with ``weights=None,
weights_backbone=None``): eval detections (boxes, labels, scores, masks) after converting torchvision's randomly
drawn weights, and the training losses for the same images, targets and seed. Behaviour: the RPN's proposal counts,
an image without objects, bad targets, the mask branch's per-class loss, mask pasting (against torchvision's
``paste_masks_in_image``). Learning: tests/test_train_detection.py trains the small configuration here
(``small_detector``) through ``paperzoo train``'s loop.
Every expected value comes from torchvision or from the property stated; none is hard-coded.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.roi_heads import paste_masks_in_image as tv_paste_masks_in_image

import paperzoo
from conftest import randomize_weights
from detection_data import make_shapes_dataset
from paperzoo.models.detection.faster_rcnn import FasterRCNN
from paperzoo.models.detection.fpn import FeaturePyramidNetwork, LastLevelMaxPool
from paperzoo.models.detection.mask_rcnn import MaskRCNN, mask_loss, paste_masks_in_image
from paperzoo.models.detection.roi_heads import fast_rcnn_loss

# Small resize on both models so that a parity test takes seconds: two images of different sizes, each resized to a
# shorter side of 160 (longer at most 224), padded to a multiple of 32; 25 detections per image (the mask branch
# costs ~0.5 GMACs per detection), of which the best 20 are compared.
SMALL = {"min_size": 160, "max_size": 224, "box_detections_per_img": 25}
IMAGE_SIZES = ((150, 200), (120, 170))


def _calibrate_and_redraw(reference: nn.Module, images: list[torch.Tensor]) -> None:
    """Redraw torchvision's weights at a scale where every part shapes the output (conftest.randomize_weights), and
    set every BatchNorm's running statistics to the batch statistics of these images, so that the features keep a
    sensible size through the 50 layers in eval mode (with random statistics they grow to ~1e4 and every proposal
    degenerates). The class logits are scaled to a spread of a few units, so that scores lie between the score
    threshold and 1 instead of saturating at 1 (ties)."""
    randomize_weights(reference, seed=0)
    batchnorms = [m for m in reference.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        reference.eval()
        batch, _ = reference.transform(images)
        for bn in batchnorms:
            bn.momentum = 1.0  # the running statistics become this batch's
        reference.backbone.train()
        reference.backbone(batch.tensors)
        reference.backbone.eval()
        for bn in batchnorms:
            bn.momentum = 0.1
        reference.roi_heads.box_predictor.cls_score.weight.mul_(0.25)


@pytest.fixture(scope="module", params=["fasterrcnn", "maskrcnn"])
def converted(request):
    """(name, torchvision model, our model with its weights converted, eval images)."""
    name = request.param
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, h, w, generator=generator) for h, w in IMAGE_SIZES]
    torch.manual_seed(0)
    reference = getattr(torchvision.models.detection, f"{name}_resnet50_fpn")(
        weights=None, weights_backbone=None, **SMALL)
    _calibrate_and_redraw(reference, images)
    ours = paperzoo.create_model(f"{name}_resnet50_fpn", **SMALL)
    paperzoo.load_weights(ours, reference.state_dict(), source="torchvision")
    return name, reference, ours, images


def _top(detection: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    order = detection["scores"].argsort(descending=True, stable=True)[:k]
    return {key: value[order] for key, value in detection.items()}


@pytest.mark.heavy
def test_eval_detections_equal_torchvision(converted):
    name, reference, ours, images = converted
    reference.eval()
    ours.eval()
    with torch.no_grad():
        expected, actual = reference(images), ours(images)
    assert len(actual) == len(expected) == len(images)
    for image, exp, act in zip(images, expected, actual, strict=True):
        assert len(exp["boxes"]) >= 20, f"{name}: too few detections ({len(exp['boxes'])}) to compare"
        assert len(act["boxes"]) == len(exp["boxes"])
        assert set(act) == set(exp) == ({"boxes", "labels", "scores"} | ({"masks"} if name == "maskrcnn" else set()))
        # The 20 best detections: beyond them, near-equal scores could order NMS's survivors differently.
        exp, act = _top(exp, 20), _top(act, 20)
        assert torch.equal(act["labels"], exp["labels"])
        torch.testing.assert_close(act["scores"], exp["scores"], atol=1e-4, rtol=0)
        torch.testing.assert_close(act["boxes"], exp["boxes"], atol=1e-4 * max(image.shape), rtol=0)
        if name == "maskrcnn":
            assert act["masks"].shape == (20, 1, *image.shape[-2:])
            assert act["masks"].max() > 0.5, "the masks must not be empty for the comparison to mean something"
            torch.testing.assert_close(act["masks"], exp["masks"], atol=1e-4, rtol=0)


@pytest.mark.heavy
def test_training_losses_equal_torchvision(converted):
    name, reference, ours, _ = converted
    images, targets = make_shapes_dataset(3, size=96, num_classes=2, seed=0, with_masks=name == "maskrcnn")
    targets[-1] = {key: value[:0] for key, value in targets[-1].items()}  # an image without objects
    reference.train()
    ours.train()
    # The same draws in the same order: the transform's size choice, then the RPN's and the RoI heads' sampling.
    torch.manual_seed(7)
    expected = reference(images, targets)
    torch.manual_seed(7)
    actual = ours(images, targets)
    assert set(actual) == set(expected)
    for key in expected:
        assert expected[key] > 0, f"{key} is 0: the comparison would not notice a wrong term"
        torch.testing.assert_close(actual[key], expected[key], atol=1e-4 * expected[key].item(), rtol=0)


# --- behaviour ---------------------------------------------------------------------------------------------------

class NarrowResNetFPN(nn.Module):
    """A ResNet-18 with a sixteenth of its channels, under an FPN: the backbone of the small detectors below (the
    same ResNet class, FPN and extra P6 level as the full models, fewer channels)."""

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 128), out_channels: int = 32) -> None:
        super().__init__()
        self.body = paperzoo.create_model("resnet18", features_only=True, stem_width=widths[0], stage_widths=widths)
        self.fpn = FeaturePyramidNetwork(list(widths), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), feature) for i, feature in enumerate(self.body(x))))


def small_detector(masks: bool = False, **kwargs) -> FasterRCNN | MaskRCNN:
    """Faster (or Mask) R-CNN for 64-pixel images, resized ×2 to 128 (so that the 16–32-pixel shapes span 8–16 cells
    of P2): the narrow backbone with a 64-channel FPN, anchors of 16…256 pixels on P2…P6, narrower heads (box
    representation 256, mask branch 32 channels), fewer proposals (300 per level before NMS, 300 after) and fewer
    sampled anchors and RoIs (64 each per image)."""
    config = dict(num_classes=3, min_size=128, max_size=128,
                  anchor_sizes=((16,), (32,), (64,), (128,), (256,)), rpn_batch_size_per_image=64,
                  rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
                  rpn_post_nms_top_n_test=100, box_batch_size_per_image=64, box_representation_size=256,
                  box_detections_per_img=20)
    config.update(kwargs)
    if "backbone" not in config:  # built only where the caller gives none
        config["backbone"] = NarrowResNetFPN(out_channels=64)
    if masks:
        return MaskRCNN(mask_conv_channels=(32,) * 4, mask_deconv_channels=32, **config)
    return FasterRCNN(**config)


def _proposals(model: nn.Module, images, targets=None) -> list[torch.Tensor]:
    captured = []
    handle = model.rpn.register_forward_hook(lambda module, args, output: captured.append(output[0]))
    try:
        model(images, targets)
    finally:
        handle.remove()
    return captured[0]


def test_rpn_keeps_the_stated_numbers_of_proposals():
    torch.manual_seed(0)
    images, targets = make_shapes_dataset(2, size=64, seed=0)
    model = small_detector(rpn_pre_nms_top_n_test=4, rpn_post_nms_top_n_test=1000, rpn_post_nms_top_n_train=7)
    model.eval()
    with torch.no_grad():
        few = _proposals(model, images)
        # Top 4 per level before NMS, 5 levels (P2…P6): at most 20 proposals whatever the post-NMS limit.
        assert all(1 <= len(p) <= 4 * 5 for p in few)
        model.rpn.pre_nms_top_n["testing"] = 1000
        many = _proposals(model, images)
        assert all(len(m) > 20 for m in many), "more candidates per level must give more proposals"
        model.rpn.post_nms_top_n["testing"] = 9
        assert [len(p) for p in _proposals(model, images)] == [9, 9]  # the post-NMS top-n, best first
    model.train()  # the training limits apply in training mode
    assert [len(p) for p in _proposals(model, images, targets)] == [7, 7]


@pytest.mark.parametrize("masks", [False, True], ids=["fasterrcnn", "maskrcnn"])
def test_image_without_objects_is_a_valid_target(masks):
    torch.manual_seed(0)
    model = small_detector(masks=masks).train()
    images, targets = make_shapes_dataset(2, size=64, seed=0, with_masks=masks)
    empty = [{key: value[:0] for key, value in target.items()} for target in targets]
    losses = model(images, empty)
    # No object: every anchor and RoI is background, so the box terms (and the mask term) vanish, and the
    # classification terms do not.
    assert losses["loss_box_reg"] == 0 and losses["loss_rpn_box_reg"] == 0
    assert losses["loss_classifier"] > 0 and losses["loss_objectness"] > 0
    if masks:
        assert losses["loss_mask"] == 0
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn"])
def test_bad_targets_raise_value_error(name):
    with torch.device("meta"):  # the checks run before any computation
        model = paperzoo.create_model(name).train()
    images, targets = make_shapes_dataset(2, size=64, seed=0, with_masks=True)
    if name.startswith("faster"):
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]

    def edit(**changes):
        return [dict(targets[0], **changes), targets[1]]

    box = targets[0]["boxes"][:1]
    one = {"labels": targets[0]["labels"][:1]} | ({"masks": targets[0]["masks"][:1]} if "masks" in targets[0] else {})
    cases = {
        "x2 < x1": edit(boxes=box[:, [2, 1, 0, 3]], **one),
        "outside the image": edit(boxes=box + torch.tensor([0.0, 0.0, 0.0, 64.0]), **one),
        "background label 0": edit(labels=torch.zeros_like(targets[0]["labels"])),
        "label num_classes": edit(labels=torch.full_like(targets[0]["labels"], model.num_classes)),
        "no targets": None,
    }
    if name.startswith("mask"):
        cases["no masks"] = [{"boxes": targets[0]["boxes"], "labels": targets[0]["labels"]}, targets[1]]
    for reason, bad in cases.items():
        with pytest.raises(ValueError, match=f"^{name} expects") as info:
            model(images, bad)
        assert "(K, 4)" in str(info.value), f"{reason}: {info.value}"


def test_fast_rcnn_box_loss_trains_only_the_true_class_deltas():
    """Class-specific regression (Fast R-CNN eq. 1): the box term reads the deltas t^u of the RoI's class u only."""
    generator = torch.Generator().manual_seed(0)
    logits, deltas = torch.randn(6, 4, generator=generator), torch.randn(6, 16, generator=generator)
    labels, targets = [torch.tensor([1, 3, 0]), torch.tensor([2, 0, 0])], [torch.randn(3, 4), torch.randn(3, 4)]
    loss = fast_rcnn_loss(logits, deltas, labels, targets)
    changed = deltas.clone().view(6, 4, 4)
    own = torch.cat(labels)
    for roi in range(6):  # every other class's deltas, and every background RoI's, changed
        for cls in range(4):
            if own[roi] == 0 or cls != own[roi]:
                changed[roi, cls] += 5.0
    again = fast_rcnn_loss(logits, changed.view(6, 16), labels, targets)
    assert again["loss_box_reg"] == loss["loss_box_reg"] and again["loss_classifier"] == loss["loss_classifier"]
    changed[0, 1] += 1.0  # the true class's deltas of a foreground RoI
    assert fast_rcnn_loss(logits, changed.view(6, 16), labels, targets)["loss_box_reg"] != loss["loss_box_reg"]


def test_mask_loss_reads_only_the_true_class_mask():
    """Mask R-CNN §3: a binary mask per class, and L_mask is defined on the RoI's ground-truth class's mask only, so
    the classes do not compete (no softmax over classes)."""
    generator = torch.Generator().manual_seed(0)
    gt_masks = [(torch.rand(2, 32, 32, generator=generator) > 0.5).to(torch.uint8)]
    gt_labels = [torch.tensor([2, 1])]
    rois, matched = [torch.tensor([[2.0, 3.0, 20.0, 25.0], [5.0, 5.0, 30.0, 17.0]])], [torch.tensor([1, 0])]
    logits = torch.randn(2, 3, 28, 28, generator=generator)
    loss = mask_loss(logits, rois, gt_masks, gt_labels, matched)
    other = logits.clone()
    other[0, [0, 2]] += 3.0  # RoI 0 matches object 1, of class 1: classes 0 and 2 must not count
    other[1, [0, 1]] -= 3.0  # RoI 1 matches object 0, of class 2
    assert mask_loss(other, rois, gt_masks, gt_labels, matched) == loss
    other[0, 1] += 1.0
    assert mask_loss(other, rois, gt_masks, gt_labels, matched) != loss


def test_paste_masks_in_image_equals_torchvision():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(5, 1, 28, 28, generator=generator)
    boxes = torch.tensor([[10.0, 12.0, 60.0, 40.0], [-5.0, -3.0, 20.0, 15.0], [70.0, 30.0, 90.5, 49.7],
                          [30.2, 5.1, 31.0, 6.0], [0.0, 0.0, 90.0, 50.0]])
    expected = tv_paste_masks_in_image(masks, boxes, (50, 90))
    torch.testing.assert_close(paste_masks_in_image(masks, boxes, (50, 90)), expected, atol=0, rtol=0)
    assert paste_masks_in_image(masks[:0], boxes[:0], (50, 90)).shape == (0, 1, 50, 90)


# Learning: tests/test_train_detection.py trains small_detector (Faster and Mask R-CNN) on the generated shapes through
# `paperzoo train`'s own loop (COCOeval mAP on held-out images).
