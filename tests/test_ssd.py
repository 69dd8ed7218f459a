"""SSD (tests/test_contract.py covers the interface; here what is SSD's own): parity with torchvision's
``ssd300_vgg16`` (eval detections and training losses after converting its weights), the default boxes against
torchvision's ``DefaultBoxGenerator`` and the paper's counts, SSD512's parameter count recomputed from the paper's
layers, the matching strategy, hard negative mining at 3:1, images without objects, and bad targets (the small SSD
here learns the synthetic shapes in tests/test_train_detection.py, through ``paperzoo train``'s loop).

Durations measured on the shared 2-core machine under a load of ~8 (one thread), wall clock: the two parity tests
share a ~8 s fixture and take ~11 s (eval) and ~19 s (training losses); the rest under a second each. CPU time
(closer to an unloaded core): all together ~16 s.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

import paperzoo
from conftest import randomize_weights
from detection_data import make_shapes_dataset
from paperzoo.measure import count_parameters
from paperzoo.models.detection.ssd import (
    SSD,
    DefaultBoxes,
    ExtraLayer,
    default_box_scales,
    hard_negative_mining,
    match_default_boxes,
)
from paperzoo.models.detection.transform import ImageBatch


def small_ssd(**kwargs) -> SSD:
    """SSD's architecture at 64×64 and a fraction of the width: VGG16's 13 convolutions (8 … 32 channels), fc6/fc7
    (64; dilation 1, since conv7 is 4×4 here), two extra layers, four prediction maps (8², 4², 2², 1²), eq. 4's
    scales from 0.2 to 0.9 and the paper's cell centres. Heads, matching, loss and inference are SSD300's."""
    config = dict(num_classes=3, image_size=64, vgg_widths=(8, 16, 32, 32, 32), fc_width=64, fc6_dilation=1,
                  extra_layers=(ExtraLayer(16, 32), ExtraLayer(16, 32)), aspect_ratios=((2,), (2, 3), (2, 3), (2,)),
                  min_scale=0.2, max_scale=0.9, first_scale=None, steps=None,
                  image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25))
    return SSD(**{**config, **kwargs})


# --- parity with torchvision -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def converted_pair():
    """torchvision's SSD300 with redrawn weights, and ours holding them. He-scaled weights (conftest) make the
    activations grow with VGG's 0…255 input range, which saturates the softmax (every score 1.0, ordered by
    ties); conv1_1 is scaled down by 100 so that the scores spread out, and the L2Norm scales drawn around 20."""
    reference = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None)
    randomize_weights(reference, seed=0)
    with torch.no_grad():
        reference.backbone.features[0].weight.div_(100.0)
        reference.backbone.scale_weight.uniform_(10.0, 30.0, generator=torch.Generator().manual_seed(1))
    with torch.device("meta"):
        ours = paperzoo.create_model("ssd300_vgg16")
    paperzoo.load_weights(ours, reference.state_dict(), source="torchvision", assign=True)
    return reference, ours


@pytest.mark.heavy
def test_converted_weights_give_torchvisions_detections(converted_pair):
    reference, ours = converted_pair
    reference.eval()
    ours.eval()
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 240, 320, generator=generator), torch.rand(3, 200, 180, generator=generator)]
    with torch.no_grad():
        expected, actual = reference(images), ours(images)
    for theirs, mine, image in zip(expected, actual, images, strict=True):
        assert set(mine) == {"boxes", "scores", "labels"}
        assert len(mine["scores"]) == len(theirs["scores"]) > 50, "too few detections to compare"
        assert theirs["scores"].std() > 0.01 and len(theirs["labels"].unique()) > 1, "degenerate detections"
        width_height = torch.tensor(image.shape[:0:-1], dtype=torch.float32)
        assert (mine["boxes"] >= 0).all() and (mine["boxes"][:, 2:] <= width_height + 1e-3).all()
        top = 100  # the best detections: further down, near-equal scores may swap places under NMS
        torch.testing.assert_close(mine["scores"][:top], theirs["scores"][:top], rtol=0, atol=1e-4)
        torch.testing.assert_close(mine["boxes"][:top], theirs["boxes"][:top], rtol=0, atol=1e-4)
        assert torch.equal(mine["labels"][:top], theirs["labels"][:top])


@pytest.mark.heavy
def test_training_losses_equal_torchvisions(converted_pair):
    reference, ours = converted_pair
    reference.train()
    ours.train()
    images, targets = make_shapes_dataset(2, size=96, num_classes=4, seed=0)
    images.append(torch.rand(3, 80, 120))  # an image without objects in the same batch
    targets.append({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)})
    torch.manual_seed(0)
    expected = reference(images, targets)
    torch.manual_seed(0)
    actual = ours(images, targets)
    assert actual.keys() == expected.keys() == {"bbox_regression", "classification"}
    for key in expected:
        assert expected[key] > 0
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=0)


def test_parameter_count_equals_torchvision():
    with torch.device("meta"):
        reference = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None)
        ours = paperzoo.create_model("ssd300_vgg16")
    assert count_parameters(ours) == sum(p.numel() for p in reference.parameters()) == 35_641_826


# --- the paper's configuration ---------------------------------------------------------------------------------------

def paper_parameter_count(num_classes: int, extra_layers: list[tuple[int, int, int, int, int]],
                          boxes_per_location: list[int]) -> int:
    """Weights + biases of SSD from the paper's description alone: VGG16's 13 3×3 convolutions (Simonyan &
    Zisserman, configuration D), fc6 (3×3, 512 → 1024) and fc7 (1×1, 1024 → 1024) subsampled (§3), conv4_3's
    L2Norm scale (512), the extra layers (1×1 then k×k, ``(in, mid, out, kernel)``), and a 3×3 predictor of
    (classes + 4)·k filters on each map."""
    def conv(c_in: int, c_out: int, kernel: int) -> int:
        return c_in * c_out * kernel * kernel + c_out

    vgg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512), (512, 512),
           (512, 512), (512, 512), (512, 512), (512, 512)]
    total = sum(conv(c_in, c_out, 3) for c_in, c_out in vgg) + conv(512, 1024, 3) + conv(1024, 1024, 1) + 512
    map_channels = [512, 1024]
    for c_in, mid, c_out, kernel, _ in extra_layers:
        total += conv(c_in, mid, 1) + conv(mid, c_out, kernel)
        map_channels.append(c_out)
    return total + sum(conv(c, (num_classes + 4) * k, 3) for c, k in zip(map_channels, boxes_per_location,
                                                                          strict=True))


def test_parameter_counts_follow_from_the_papers_layers():
    # (in, mid, out, kernel, output size) of conv8 … conv11 (Fig. 2) and conv12 (SSD512): the paper's layers
    ssd300_extras = [(1024, 256, 512, 3, 10), (512, 128, 256, 3, 5), (256, 128, 256, 3, 3), (256, 128, 256, 3, 1)]
    ssd512_extras = [(1024, 256, 512, 3, 16), (512, 128, 256, 3, 8), (256, 128, 256, 3, 4), (256, 128, 256, 3, 2),
                     (256, 128, 256, 4, 1)]
    expected = {"ssd300_vgg16": paper_parameter_count(91, ssd300_extras, [4, 6, 6, 6, 4, 4]),
                "ssd512_vgg16": paper_parameter_count(91, ssd512_extras, [4, 6, 6, 6, 6, 4, 4])}
    assert expected["ssd300_vgg16"] == 35_641_826  # the same derivation reproduces torchvision's count
    for name, count in expected.items():
        with torch.device("meta"):
            model = paperzoo.create_model(name)
        assert count_parameters(model) == count == paperzoo.model_card(name).params, name


@pytest.mark.parametrize("name, sizes, boxes", [
    # the paper: Fig. 2 (SSD300's maps) and Table 7 ("# Boxes": 8732 for SSD300, 24564 for SSD512);
    # SSD512's maps 64², 32², 16², 8², 4², 2², 1²
    ("ssd300_vgg16", [38, 19, 10, 5, 3, 1], 8732),
    ("ssd512_vgg16", [64, 32, 16, 8, 4, 2, 1], 24564),
])
def test_prediction_maps_and_number_of_default_boxes(name, sizes, boxes):
    with torch.device("meta"):
        model = paperzoo.create_model(name)
        size = paperzoo.model_card(name).input.shape[-1]
        maps = model.backbone(torch.zeros(1, 3, size, size))
    assert [m.shape[-1] for m in maps] == [m.shape[-2] for m in maps] == sizes
    batch = ImageBatch(torch.zeros(1, 3, size, size), [(size, size)])
    default_boxes = model.default_boxes(batch, [torch.zeros(1, 1, s, s) for s in sizes])[0]
    assert default_boxes.shape == (boxes, 4)
    assert sum(k * s * s for k, s in zip(model.default_boxes.num_boxes_per_location(), sizes, strict=True)) == boxes


def test_default_boxes_equal_torchvisions_for_ssd300():
    with torch.device("meta"):
        reference = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None)
        ours = paperzoo.create_model("ssd300_vgg16")
    generator = reference.anchor_generator  # plain Python configuration and CPU tensors
    assert ours.default_boxes.scales == pytest.approx(generator.scales, abs=1e-12)
    sizes = [38, 19, 10, 5, 3, 1]
    maps = [torch.zeros(2, 1, s, s) for s in sizes]
    expected = generator(ImageList(torch.zeros(2, 3, 300, 300), [(300, 300), (300, 300)]), maps)
    actual = ours.default_boxes(ImageBatch(torch.zeros(2, 3, 300, 300), [(300, 300), (300, 300)]), maps)
    assert len(actual) == len(expected) == 2
    for mine, theirs in zip(actual, expected, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-4)
    # and the same boxes for other scales/aspect ratios/steps (SSD512's configuration, without clipping)
    ratios, scales, steps = [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]], default_box_scales(7), [8, 16, 32, 64,
                                                                                                     128, 256, 512]
    theirs = DefaultBoxGenerator(ratios, scales=scales, steps=steps, clip=False)
    mine = DefaultBoxes(ratios, scales, steps, clip=False)
    maps = [torch.zeros(1, 1, s, s) for s in [64, 32, 16, 8, 4, 2, 1]]
    torch.testing.assert_close(mine(ImageBatch(torch.zeros(1, 3, 512, 512), [(512, 512)]), maps)[0],
                               theirs(ImageList(torch.zeros(1, 3, 512, 512), [(512, 512)]), maps)[0],
                               rtol=0, atol=1e-4)


def test_default_box_scales_follow_eq_4():
    m = 6
    # eq. 4 over all m maps (s_min = 0.2, s_max = 0.9, the paper's §2.2), and s_{m+1} one step further
    exact = [0.2 + (0.9 - 0.2) * (k - 1) / (m - 1) for k in range(1, m + 2)]
    assert default_box_scales(m, 0.2, 0.9, first_scale=None, whole_percent_step=False) == pytest.approx(exact)
    # SSD512 (the paper's footnote: s_min = 0.15, 0.07 on conv4_3): the step 0.15 is a whole percent already
    assert default_box_scales(7) == pytest.approx([0.07, 0.15, 0.30, 0.45, 0.60, 0.75, 0.90, 1.05])
    assert default_box_scales(7) == pytest.approx(default_box_scales(7, whole_percent_step=False))
    boxes = DefaultBoxes([[2, 3]], [0.3, 0.48])
    sizes = boxes.box_sizes(0)  # s_k, s'_k = sqrt(s_k s_k+1), then each a_r and 1/a_r: w = s√a, h = s/√a
    s, s_prime = 0.3, math.sqrt(0.3 * 0.48)
    expected = [[s, s], [s_prime, s_prime], [s * 2 ** 0.5, s / 2 ** 0.5], [s / 2 ** 0.5, s * 2 ** 0.5],
                [s * 3 ** 0.5, s / 3 ** 0.5], [s / 3 ** 0.5, s * 3 ** 0.5]]
    torch.testing.assert_close(sizes, torch.tensor(expected))


# --- matching, hard negative mining, the loss --------------------------------------------------------------------

def _iou(a: list[float], b: list[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_matching_gives_every_object_its_best_box_and_every_box_above_half():
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(60, 2, generator=generator) * 80
    default_boxes = torch.cat([corners, corners + 5 + torch.rand(60, 2, generator=generator) * 30], dim=1)
    ground_truth = torch.tensor([[10.0, 10.0, 40.0, 40.0], [50.0, 20.0, 90.0, 35.0], [0.0, 0.0, 3.0, 3.0]])
    matches = match_default_boxes(ground_truth, default_boxes, 0.5)
    iou = [[_iou(g.tolist(), d.tolist()) for d in default_boxes] for g in ground_truth]
    best_box = [max(range(len(default_boxes)), key=lambda d: row[d]) for row in iou]
    for d in range(len(default_boxes)):
        overlaps = [row[d] for row in iou]
        if d in best_box:  # an object's best default box is that object's, whatever the overlap
            assert int(matches[d]) == best_box.index(d)
        elif max(overlaps) >= 0.5:
            assert int(matches[d]) == overlaps.index(max(overlaps))
        else:
            assert int(matches[d]) == -1
    assert max(iou[2]) < 0.5 and int(matches[best_box[2]]) == 2  # the tiny object is still matched


def test_hard_negative_mining_keeps_the_hardest_negatives_at_three_to_one():
    generator = torch.Generator().manual_seed(0)
    loss = torch.rand(3, 40, generator=generator)
    positive = torch.zeros(3, 40, dtype=torch.bool)
    positive[0, [1, 5, 9]] = True  # 3 positives → 9 negatives
    positive[1, :12] = True  # 12 positives, 28 negatives → all 28 (fewer than 36)
    negative = hard_negative_mining(loss, positive, neg_pos_ratio=3.0)  # image 2: no positive, no negative
    for row in range(3):
        candidates = sorted((i for i in range(40) if not positive[row, i]), key=lambda i: -float(loss[row, i]))
        expected = set(candidates[: min(3 * int(positive[row].sum()), len(candidates))])
        assert set(torch.nonzero(negative[row]).flatten().tolist()) == expected
    assert negative.sum(1).tolist() == [9, 28, 0]
    assert not (negative & positive).any()


def test_image_without_objects_is_a_valid_target():
    torch.manual_seed(0)
    model = small_ssd().train()
    images, targets = make_shapes_dataset(2, size=64, num_classes=2, seed=0)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model([images[0]], [empty])
    # no object: no box to regress and no negative to mine (3 × 0), so both terms are 0 (eq. 1 with N = 0)
    assert losses["bbox_regression"].item() == 0 and losses["classification"].item() == 0
    losses = model(images + [torch.rand(3, 50, 70)], targets + [empty])
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    # the empty image adds no term: the loss is that of the other two images
    alone = model(images, targets)
    for key in losses:
        torch.testing.assert_close(losses[key], alone[key])


def test_objects_at_every_scale_train_every_parameter():
    """Only the matched default boxes and the hardest 3× as many negatives enter the loss, so a map whose boxes
    are neither gets no gradient in that step (SSD300 on images of large shapes only: conv4_3's L2Norm and
    predictors, and conv9 … conv11). With objects from 0.1 to 0.9 of the image every map matches one,
    and every parameter learns."""
    torch.manual_seed(0)
    model = small_ssd().train()
    # 12, 40, 56 pixels and a 24×28 box: matched on the maps of scale 0.2, 0.66 (and 0.43), 0.89 and 0.43
    boxes = torch.tensor([[26.0, 26.0, 38.0, 38.0], [0.0, 0.0, 40.0, 40.0], [4.0, 4.0, 60.0, 60.0],
                          [40.0, 8.0, 64.0, 36.0]])
    target = {"boxes": boxes, "labels": torch.tensor([1, 2, 1, 2])}
    losses = model([torch.rand(3, 64, 64)], [target])
    sum(losses.values()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{name} received no gradient"


def test_bad_targets_raise_value_error():
    model = small_ssd().train()
    images, targets = make_shapes_dataset(1, size=64, num_classes=2, seed=0)
    box, label = targets[0]["boxes"][:1], targets[0]["labels"][:1]
    cases = {
        "x2 < x1": {"boxes": box[:, [2, 1, 0, 3]], "labels": label},
        "outside the image": {"boxes": box + torch.tensor([0.0, 0.0, 64.0, 0.0]), "labels": label},
        "background label 0": {"boxes": box, "labels": torch.zeros(1, dtype=torch.int64)},
        "label = num_classes": {"boxes": box, "labels": torch.full((1,), 3)},
        "boxes (K, 3)": {"boxes": box[:, :3], "labels": label},
        "missing labels": {"boxes": box},
    }
    for target in cases.values():
        with pytest.raises(ValueError, match="^ssd expects"):
            model(images, [target])
    with pytest.raises(ValueError, match="^ssd expects"):
        model(images)  # training without targets


# Learning: tests/test_train_detection.py trains small_ssd on the generated shapes through
# `paperzoo train`'s own loop (COCOeval mAP on held-out images).
