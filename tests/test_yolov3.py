"""YOLOv3 and Darknet-53: the network is yolov3.cfg's layer list; Darknet-53 equals timm's darknet53; decoding, the
one-prior assignment, the ignore rule, the loss and the post-processing each equal an independent computation
here (plain Python loops over the grid with the paper's equations); an image without objects is a valid target;
bad targets raise ValueError. (A small YOLOv3 learns the synthetic shapes in tests/test_train_detection.py.)

There is no reference implementation of YOLOv3 installed: the parameter count (61,949,149, the ultralytics/yolov3
model summary of yolov3.cfg) and the layer shapes are checked against the cfg's layer list, written out below.
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn

import paperzoo
from conftest import assert_close_rel, randomize_weights
from detection_data import make_shapes_dataset
from paperzoo.models.detection.yolov3 import COCO_ANCHORS, STRIDES, decode_boxes


def tiny_yolo(**kwargs) -> nn.Module:
    """A narrow, shallow YOLOv3 on 64×64 inputs (maps of 8×8, 4×4, 2×2): the same head, loss and decoding."""
    torch.manual_seed(0)
    options = dict(num_classes=3, image_size=64,
                   backbone_kwargs=dict(stage_widths=(8, 8, 16, 16, 32), units_per_stage=(1, 1, 1, 1, 1),
                                        stem_width=8))
    return paperzoo.create_model("yolov3", **{**options, **kwargs})


# --- the network: yolov3.cfg --------------------------------------------------------------------------------------

def yolov3_cfg_convolutions(num_outputs: int = 255) -> list[tuple[int, int, int, bool]]:
    """The convolutions of the authors' yolov3.cfg in file order, as (in, filters, size, batch_normalize), with the
    channels its route and upsample layers give: written from the cfg, independently of the model code."""
    convs, channels, saved = [], 3, {}

    def conv(filters: int, size: int, bn: bool = True) -> None:
        nonlocal channels
        convs.append((channels, filters, size, bn))
        channels = filters

    conv(32, 3)
    for filters, repeats in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        conv(filters, 3)  # stride 2
        for _ in range(repeats):  # [convolutional] 1×1 filters/2, [convolutional] 3×3 filters, [shortcut]
            conv(filters // 2, 1)
            conv(filters, 3)
        saved[filters] = channels  # layers 36 (256), 61 (512), 74 (1024)
    for width, backbone in ((512, None), (256, 512), (128, 256)):
        if backbone is not None:
            conv(width, 1)  # after [route] -4: the 1×1 before [upsample]
            channels += saved[backbone]  # [route] -1, 61 (or 36): concatenation
        for size in (1, 3, 1, 3, 1):
            conv(width if size == 1 else 2 * width, size)
        conv(2 * width, 3)
        conv(num_outputs, 1, bn=False)  # linear, with bias; then [yolo]
        channels = width  # [route] -4 goes back to the block's last 1×1
    return convs


def test_layers_are_yolov3_cfg_and_count_61_949_149():
    with torch.device("meta"):
        model = paperzoo.create_model("yolov3")
    ours = [(m.in_channels, m.out_channels, m.kernel_size[0], m.bias is None) for m in model.modules()
            if isinstance(m, nn.Conv2d)]
    cfg = yolov3_cfg_convolutions()
    assert ours == cfg  # every convolution in cfg order: BN ones without bias, the three outputs with
    assert len(cfg) == 75  # 52 in Darknet-53, 23 in the head
    count = sum(i * o * k * k + (2 * o if bn else o) for i, o, k, bn in cfg)  # weights + BN scale/shift or bias
    assert count == 61_949_149 == paperzoo.count_parameters(model)  # the ultralytics/yolov3 model summary


def test_three_scales_at_416():
    with torch.device("meta"):  # shapes only
        model = paperzoo.create_model("yolov3").eval()
        outputs = model.predict(torch.zeros(1, 3, 416, 416))
    assert [tuple(o.shape) for o in outputs] == [(1, 3, 52, 52, 85), (1, 3, 26, 26, 85), (1, 3, 13, 13, 85)]
    assert tiny_yolo().anchors.tolist() == [list(map(float, a)) for a in COCO_ANCHORS]  # the default priors
    assert sum(o[0, ..., 0].numel() for o in outputs) == 10_647  # the boxes YOLOv3 predicts per image


# --- Darknet-53 -------------------------------------------------------------------------------------------------

@pytest.mark.heavy
def test_darknet53_equals_timm():
    """timm's darknet53 is Darknet-53 with leaky ReLU slope 0.01 (its default): with that slope ours, holding the
    converted weights, gives the same logits, and the same stride-8 map with features_only."""
    torch.manual_seed(0)
    slope = 0.01
    reference = randomize_weights(timm.create_model("darknet53", pretrained=False)).eval()
    assert reference.stem.conv1.bn.act.negative_slope == slope
    with torch.device("meta"):
        ours = paperzoo.create_model("darknet53", negative_slope=slope)
    ours = paperzoo.load_weights(ours, reference.state_dict(), source="timm", assign=True).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert_close_rel(ours(x), reference(x))
        features = paperzoo.load_weights(paperzoo.create_model("darknet53", negative_slope=slope,
                                                                features_only=True, out_indices=(2, 3, 4)),
                                          {k: v for k, v in reference.state_dict().items() if "head" not in k},
                                          source="timm").eval()(x)
        expected = reference.stages[:3](reference.stem(x))
        assert_close_rel(features[0], expected)  # the stride-8 map YOLOv3 takes


# --- decoding, assignment, ignore, loss: against plain loops ---------------------------------------------------

def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def hand_decode(t, cell_x: int, cell_y: int, prior, stride: int) -> list[float]:
    """The paper's equations for one prediction: b_x = σ(t_x) + c_x, b_y = σ(t_y) + c_y, b_w = p_w e^{t_w},
    b_h = p_h e^{t_h}; the centre in cells, scaled to pixels."""
    bx, by = (sigmoid(t[0]) + cell_x) * stride, (sigmoid(t[1]) + cell_y) * stride
    bw, bh = prior[0] * math.exp(t[2]), prior[1] * math.exp(t[3])
    return [bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2]


def test_decoding_equals_a_loop_over_the_grid():
    torch.manual_seed(0)
    prediction = torch.randn(3, 5, 7, 8)  # [A, H, W, 5 + C]: a non-square grid
    priors = torch.tensor([[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]])
    boxes = decode_boxes(prediction, priors, stride=8)
    for a in range(3):
        for y in range(5):
            for x in range(7):
                expected = hand_decode(prediction[a, y, x].tolist(), x, y, priors[a].tolist(), 8)
                assert boxes[a, y, x].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-4)


def test_each_object_goes_to_the_prior_of_best_shape_iou():
    model = tiny_yolo(image_size=416, anchors=COCO_ANCHORS)
    torch.manual_seed(1)
    sizes = torch.exp(torch.empty(40, 2).uniform_(math.log(4), math.log(400)))  # from 4 to 400 pixels, log-uniform
    corners = torch.rand(40, 2) * (416 - sizes)
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scales, priors = model.assign(boxes)
    for box, scale, prior in zip(boxes.tolist(), scales.tolist(), priors.tolist(), strict=True):
        w, h = box[2] - box[0], box[3] - box[1]
        # the IoU of the box and each prior placed at the same centre
        overlaps = [iou([-w / 2, -h / 2, w / 2, h / 2], [-pw / 2, -ph / 2, pw / 2, ph / 2]) for pw, ph in COCO_ANCHORS]
        assert 3 * scale + prior == max(range(9), key=lambda k: overlaps[k])
    assert set(scales.tolist()) == {0, 1, 2}  # the test boxes reach every scale


def brute_force_loss(predictions, targets, priors, num_classes, ignore_threshold=0.5):
    """The paper's loss by loops over every prediction of every scale: (box, objectness, class) sums / images, and
    the number of ignored predictions."""
    box_loss = objectness_loss = class_loss = 0.0
    ignored = 0

    def bce(logit: float, target: float) -> float:
        p = sigmoid(logit)
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    for i, target in enumerate(targets):
        gts, labels = target["boxes"].tolist(), target["labels"].tolist()
        assigned = {}  # (scale, prior, y, x) → object; a later object on the same prediction replaces an earlier one
        for g, box in enumerate(gts):
            w, h = box[2] - box[0], box[3] - box[1]
            overlaps = [min(w, pw) * min(h, ph) / (w * h + pw * ph - min(w, pw) * min(h, ph)) for pw, ph in priors]
            scale, prior = divmod(max(range(len(priors)), key=lambda k: overlaps[k]), 3)
            stride = STRIDES[scale]
            x, y = (box[0] + box[2]) / 2 / stride, (box[1] + box[3]) / 2 / stride
            assigned[(scale, prior, int(y), int(x))] = g
        for scale, prediction in enumerate(predictions):
            stride = STRIDES[scale]
            _, anchors, height, width, _ = prediction.shape
            for a in range(anchors):
                for y in range(height):
                    for x in range(width):
                        t = prediction[i, a, y, x].tolist()
                        prior = priors[3 * scale + a]
                        if (scale, a, y, x) in assigned:
                            box = gts[assigned[(scale, a, y, x)]]
                            cx, cy = (box[0] + box[2]) / 2 / stride - x, (box[1] + box[3]) / 2 / stride - y
                            box_loss += (sigmoid(t[0]) - cx) ** 2 + (sigmoid(t[1]) - cy) ** 2
                            box_loss += (t[2] - math.log((box[2] - box[0]) / prior[0])) ** 2
                            box_loss += (t[3] - math.log((box[3] - box[1]) / prior[1])) ** 2
                            objectness_loss += bce(t[4], 1.0)
                            label = labels[assigned[(scale, a, y, x)]]
                            class_loss += sum(bce(t[5 + c], float(c == label)) for c in range(num_classes))
                            continue
                        decoded = hand_decode(t, x, y, prior, stride)
                        if gts and max(iou(decoded, box) for box in gts) > ignore_threshold:
                            ignored += 1  # no objectness loss at all
                            continue
                        objectness_loss += bce(t[4], 0.0)
    n = len(targets)
    return box_loss / n, objectness_loss / n, class_loss / n, ignored


def predictions_near(model, targets, seed=0):
    """Random raw predictions for a batch, with some unassigned predictions steered onto the objects (so that the
    ignore rule has something to ignore)."""
    generator = torch.Generator().manual_seed(seed)
    n, size = len(targets), model.image_size
    predictions = [torch.randn(n, 3, size // s, size // s, 5 + model.num_classes, generator=generator) * 1.5
                   for s in STRIDES]
    for i, target in enumerate(targets):
        for box in target["boxes"]:
            for scale, stride in enumerate(STRIDES):
                x, y = int((box[0] + box[2]) / 2 / stride), int((box[1] + box[3]) / 2 / stride)
                for a in range(3):
                    prior = model.priors(scale)[a]
                    center = (box[:2] + box[2:]) / 2 / stride - torch.tensor([x, y])
                    exact = torch.cat([torch.logit(center.clamp(0.05, 0.95)), torch.log((box[2:] - box[:2]) / prior)])
                    predictions[scale][i, a, y, x, :4] = exact + 0.1 * torch.randn(4, generator=generator)
    return predictions


def test_loss_equals_the_paper_computed_by_loops():
    model = tiny_yolo(anchors=((6, 6), (9, 12), (12, 9), (14, 14), (20, 16), (16, 20), (24, 24), (32, 28), (28, 32)))
    _, targets = make_shapes_dataset(3, size=64, num_classes=3, seed=3)
    targets = [{"boxes": t["boxes"], "labels": t["labels"] - 1} for t in targets]
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}  # no objects: valid
    # two objects on the same prediction: the later one is its target
    targets[2] = {"boxes": torch.cat([targets[2]["boxes"], targets[2]["boxes"][:1] + 0.5]),
                  "labels": torch.cat([targets[2]["labels"], torch.tensor([(int(targets[2]["labels"][0]) + 1) % 3])])}
    predictions = predictions_near(model, targets)
    losses = model.loss(predictions, targets)
    box, objectness, classes, ignored = brute_force_loss(predictions, targets, model.anchors.tolist(), 3)
    assert ignored > 0, "the test must exercise the ignore rule"
    assert losses["loss_box"].item() == pytest.approx(box, rel=1e-5)
    assert losses["loss_objectness"].item() == pytest.approx(objectness, rel=1e-5)
    assert losses["loss_classifier"].item() == pytest.approx(classes, rel=1e-5)


def test_ignore_threshold_is_the_papers_and_the_release_value_is_one_keyword_away():
    """§2.1: "We use the threshold of .5"; the released yolov3.cfg says ignore_thresh = .7. The card says which one
    this build follows, and ignore_threshold=0.7 is the release's loss, equal to the loops at that threshold."""
    card = paperzoo.model_card("yolov3")
    assert "0.5" in card.notes and ".7" in card.notes and "ignore_threshold=0.7" in card.notes
    anchors = ((6, 6), (9, 12), (12, 9), (14, 14), (20, 16), (16, 20), (24, 24), (32, 28), (28, 32))
    assert tiny_yolo(anchors=anchors).ignore_threshold == 0.5
    model = tiny_yolo(anchors=anchors, ignore_threshold=0.7)
    _, targets = make_shapes_dataset(3, size=64, num_classes=3, seed=3)
    targets = [{"boxes": t["boxes"], "labels": t["labels"] - 1} for t in targets]
    predictions = predictions_near(model, targets)
    at_05 = brute_force_loss(predictions, targets, model.anchors.tolist(), 3, ignore_threshold=0.5)
    at_07 = brute_force_loss(predictions, targets, model.anchors.tolist(), 3, ignore_threshold=0.7)
    assert at_07[3] < at_05[3], "the two thresholds must ignore different predictions here"
    objectness = model.loss(predictions, targets)["loss_objectness"].item()
    assert objectness == pytest.approx(at_07[1], rel=1e-5) and objectness != pytest.approx(at_05[1], rel=1e-5)


def test_ignored_predictions_get_no_objectness_gradient():
    """A prediction that overlaps an object by more than 0.5 but is not its assigned one is ignored; below 0.5 it
    learns objectness 0."""
    model = tiny_yolo(anchors=((6, 6), (9, 12), (12, 9), (14, 14), (20, 16), (16, 20), (24, 24), (32, 28), (28, 32)))
    box = torch.tensor([[16.0, 16.0, 40.0, 40.0]])  # 24×24: prior (24, 24) at stride 32, cell (0, 0)
    targets = [{"boxes": box, "labels": torch.tensor([1])}]
    scale, prior = (int(v) for v in model.assign(box))
    assert (scale, prior) == (2, 0)
    predictions = [torch.zeros(1, 3, 64 // s, 64 // s, 8, requires_grad=True) for s in STRIDES]
    with torch.no_grad():  # prior 1 of the same cell predicts the object's box exactly: IoU 1, but not assigned
        predictions[2][0, 1, 0, 0, :4] = torch.tensor([torch.logit(torch.tensor(28 / 32)), torch.logit(
            torch.tensor(28 / 32)), math.log(24 / 32), math.log(24 / 28)])
    model.loss(predictions, targets)["loss_objectness"].backward()
    gradient = predictions[2].grad[0, ..., 4]
    assert gradient[1, 0, 0] == 0  # ignored
    assert gradient[0, 0, 0] < 0  # assigned: pushed towards 1
    assert gradient[2, 0, 0] > 0  # σ(0) = 0.5 and IoU < 0.5 with the object: pushed towards 0


# --- post-processing ---------------------------------------------------------------------------------------------

def test_postprocessing_equals_threshold_and_greedy_nms_per_class():
    model = tiny_yolo(score_threshold=0.2, nms_threshold=0.45, candidates_per_image=10**6, detections_per_image=30)
    generator = torch.Generator().manual_seed(0)
    predictions = [torch.randn(1, 3, 64 // s, 64 // s, 8, generator=generator) for s in STRIDES]
    (detection,) = model.postprocess(predictions, [(64, 64)])
    candidates = []  # every (box, class) whose score σ(t_o)·σ(t_c) passes the threshold, clipped to the image
    for scale, prediction in enumerate(predictions):
        for a in range(3):
            for y in range(prediction.shape[2]):
                for x in range(prediction.shape[3]):
                    t = prediction[0, a, y, x].tolist()
                    box = [min(max(v, 0.0), 64.0) for v in
                           hand_decode(t, x, y, model.priors(scale)[a].tolist(), STRIDES[scale])]
                    for c in range(3):
                        score = sigmoid(t[4]) * sigmoid(t[5 + c])
                        if score > 0.2:
                            candidates.append((score, c, box))
    kept = []
    for score, c, box in sorted(candidates, key=lambda d: -d[0]):  # greedy NMS, each class on its own
        if all(k[1] != c or iou(box, k[2]) <= 0.45 for k in kept):
            kept.append((score, c, box))
    kept = kept[:30]
    assert len(candidates) > len(kept) > 5, "the test must exercise both the threshold and the suppression"
    assert detection["scores"].tolist() == pytest.approx([k[0] for k in kept], rel=1e-5)
    assert detection["labels"].tolist() == [k[1] for k in kept]
    assert detection["boxes"].flatten().tolist() == pytest.approx([v for k in kept for v in k[2]], rel=1e-5, abs=1e-4)


def test_detections_are_in_the_input_pixels():
    model = tiny_yolo(score_threshold=0.001).eval()
    image = torch.rand(3, 48, 100)  # resized to 64×64: x scaled by 100/64, y by 48/64
    with torch.no_grad():
        (detection,) = model([image])
        batch, _ = model.transform([image])
        (resized,) = model.postprocess(model.predict(batch.tensors), batch.image_sizes)
    assert len(detection["boxes"]) > 0
    scale = torch.tensor([100 / 64, 48 / 64, 100 / 64, 48 / 64])
    assert_close_rel(detection["boxes"], resized["boxes"] * scale)
    assert detection["boxes"][:, 0::2].max() <= 100 and detection["boxes"][:, 1::2].max() <= 48


# --- input checks --------------------------------------------------------------------------------------------------

def test_an_image_without_objects_is_a_valid_target():
    model = tiny_yolo().train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 80, 60)]
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    losses = model(images, targets)
    assert losses["loss_box"] == 0 and losses["loss_classifier"] == 0 and losses["loss_objectness"] > 0


@pytest.mark.parametrize("reason, boxes, labels", [
    ("x2 < x1", [[30.0, 10.0, 20.0, 20.0]], [0]),
    ("outside the image", [[10.0, 10.0, 70.0, 20.0]], [0]),
    ("label equal to num_classes", [[10.0, 10.0, 20.0, 20.0]], [3]),
    ("negative label", [[10.0, 10.0, 20.0, 20.0]], [-1]),
])
def test_bad_targets_raise_value_error(reason, boxes, labels):
    model = tiny_yolo().train()
    targets = [{"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)}]
    with pytest.raises(ValueError, match=r"^yolov3 expects .*\(K, 4\)"):
        model([torch.rand(3, 64, 64)], targets)


def test_bad_images_raise_value_error():
    model = tiny_yolo().eval()
    for images in ([], [torch.rand(4, 64, 64)], torch.rand(1, 3, 64, 64)):
        with pytest.raises(ValueError, match=r"^yolov3 expects a list of float tensors of shape \(3, H, W\)"):
            model(images)


# Learning: tests/test_train_detection.py trains a small YOLOv3 on the generated shapes through
# `paperzoo train`'s own loop (COCOeval mAP on held-out images).
