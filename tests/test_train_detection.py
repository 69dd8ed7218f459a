"""``paperzoo train`` for detectors and instance segmenters: learning through the loop's own code path, resume,
COCOeval against the project's VOC-style mAP, and the COCO folder's bad inputs.

The learning tests train the small configurations of the detector test files (the same classes, losses,
matching and post-processing as the registered models, at a fraction of the width), registered under a test
name for the test's duration, on the generated shapes (``--data shapes``, the task's default)."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest
import torch

import paperzoo
from paperzoo import registry
from paperzoo.cli import main
from paperzoo.models.detection.evaluation import mean_average_precision
from paperzoo.training import detection_data
from paperzoo.training.loop import TrainConfig, train
from resume import whole_and_resumed

sys.path.insert(0, str(Path(__file__).parent))  # the detector test files' small configurations

from detection_data import TINY_DETECTORS, TinyDetector  # noqa: E402
from test_rcnn import NarrowResNetFPN, small_detector  # noqa: E402
from test_retinanet import small_retinanet  # noqa: E402
from test_ssd import small_ssd  # noqa: E402

pytest.importorskip("pycocotools")

YOLO_BACKBONE = dict(stage_widths=(8, 16, 32, 64, 128), units_per_stage=(1, 1, 1, 1, 1), stem_width=8)
# Nine priors for these 16-68-pixel objects at 128 pixels (COCO's are for 416).
YOLO_PRIORS = ((16, 16), (24, 20), (20, 28), (32, 32), (44, 34), (34, 46), (52, 52), (68, 56), (56, 68))

# test name -> (registered model whose card it borrows, builder)
# The two-stage detectors with a 32-channel FPN (small_detector's is 64): the RoI pooling (forward and backward,
# about 30% of Mask R-CNN's training time under cProfile) and the heads work on half the channels (issue 26; the
# figures below LEARNING).
SMALL = {
    "small_fasterrcnn": ("fasterrcnn_resnet50_fpn",
                         lambda **kw: small_detector(masks=False, backbone=NarrowResNetFPN(out_channels=32), **kw)),
    "small_maskrcnn": ("maskrcnn_resnet50_fpn",
                       lambda **kw: small_detector(masks=True, backbone=NarrowResNetFPN(out_channels=32), **kw)),
    "small_retinanet": ("retinanet_resnet50_fpn", lambda **kw: small_retinanet(detections_per_img=20, **kw)),
    "small_ssd": ("ssd300_vgg16", small_ssd),
    "small_yolov3": ("yolov3", lambda **kw: paperzoo.create_model(
        "yolov3", anchors=YOLO_PRIORS, backbone_kwargs=YOLO_BACKBONE, score_threshold=0.05, **kw)),
}


@pytest.fixture
def small_models(monkeypatch):
    """The small configurations in the registry (with their full model's card and task) for one test."""
    for name, (base, builder) in SMALL.items():
        card = dataclasses.replace(paperzoo.model_card(base), name=name)
        monkeypatch.setitem(registry._REGISTRY, name, registry._Entry(builder, card))


# --- learning --------------------------------------------------------------------------------------------------

# name -> (TrainConfig fields, {test metric: threshold}). Chance is an AP@.5 of about 0 (random boxes rarely overlap
# a shape by IoU 0.5). Measured (COCO AP@.5 on the 64 held-out images, one thread; CPU seconds of one core on the
# shared 2-core machine), and the thresholds at about 80% of it:
#   Faster R-CNN  160 images x 7 epochs at 128 px: 0.660, 48 s (240 x 7: at least 0.7; 44 s wall in the last full run)
#   Mask R-CNN    160 x 5 at 128 px: boxes 0.738, masks 0.741, 59 s (240 x 5: 0.85 and 0.85; 83 s wall)
#   RetinaNet     800 x 4 at 64 px: 0.567, 39 s (1,600 x 4: 0.99; 98 s wall); without --clip-grad the focal
#                 loss stalled: 0.00 after 400 steps
#   SSD           800 x 6 at 64 px: 0.78 (25 s wall)
#   YOLOv3        400 x 6 at 128 px: 0.662, 33 s (800 x 6: 0.91, 60 s wall; at 96 px 800 x 6: 0.695, 47 s); no backbone
#                 pre-training needed
# The image counts were halved for the suite's time (issue 26): the same code path, learning less far. Then (issue
# 26 again) fewer epochs, thresholds at about 80% of what they reach (one thread, alone, seconds of the run):
#   Faster R-CNN  160 x 5: 0.623 (36 s);  Mask R-CNN  160 x 4: boxes 0.646, masks 0.646 (47 s)
#   RetinaNet     800 x 3: 0.543 (33 s);  YOLOv3      400 x 4: 0.609 (21 s)
# Then (issue 26, last) the two-stage detectors' FPN at 32 channels instead of 64, the thresholds kept:
#   Faster R-CNN  0.626 (20.9 s);  Mask R-CNN  boxes 0.637, masks 0.639 (29.9 s; at 64 channels, measured beside
#                 it: 0.680 and 0.680, 46.6 s)
# Then small_detector stopped building a 64-channel backbone that the 32-channel one replaced: the heads draw other
# initial weights, the thresholds kept: Faster R-CNN 0.596, Mask R-CNN boxes 0.603, masks 0.604 (pytest -s, one
# thread, a benchmark running on the other core).
LEARNING = {
    "small_fasterrcnn": (dict(epochs=5, batch_size=8, lr=2e-3, image_size=128, options={"shapes_images": 160}),
                         {"map50": 0.5}),
    "small_maskrcnn": (dict(epochs=4, batch_size=8, lr=2e-3, image_size=128, options={"shapes_images": 160}),
                       {"map50": 0.52, "mask_map50": 0.52}),
    "small_retinanet": (dict(epochs=3, batch_size=4, lr=2e-3, image_size=64,
                             options={"shapes_images": 800, "clip_grad": 1.0}), {"map50": 0.43}),
    "small_ssd": (dict(epochs=6, batch_size=16, lr=2e-3, image_size=64, options={"shapes_images": 800}),
                  {"map50": 0.7}),
    "small_yolov3": (dict(epochs=4, batch_size=8, lr=3e-3, image_size=128, options={"shapes_images": 400}),
                     {"map50": 0.49}),
}


@pytest.mark.heavy
@pytest.mark.parametrize("name", list(LEARNING))
def test_small_detector_learns_the_shapes(name, small_models, tmp_path, one_thread):
    """Each detector, in its small configuration, learns rectangles vs ellipses on noise through ``paperzoo
    train``'s loop (AdamW with cosine decay, the loop's default: no detector card has a recipe), scored by
    COCOeval on the 64 held-out images."""
    fields, thresholds = LEARNING[name]
    summary = train(TrainConfig(model=name, out=str(tmp_path), **fields))
    final = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    reached = {metric: final[f"test_{metric}"] for metric in thresholds}
    print(name, reached, f"{summary['seconds_this_run']:.0f} s")
    assert summary["final_train_loss"] < 0.7 * summary["first_train_loss"]
    for metric, threshold in thresholds.items():
        assert reached[metric] >= threshold, f"{name}: test {metric} {reached[metric]:.3f} < {threshold}"


# --- resume ----------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny(monkeypatch):
    """tests/detection_data.py's tiny detector and instance segmenter in the registry, taking the loop's image
    size (``min_size``; they resize every image to that square)."""
    for name, (_, card) in TINY_DETECTORS.items():
        masks = card.task == "instance-segmentation"

        def build(min_size: int = 64, max_size: int = 64, masks: bool = masks, **kwargs) -> TinyDetector:
            return TinyDetector(with_masks=masks, size=min_size, **kwargs)

        monkeypatch.setitem(registry._REGISTRY, name, registry._Entry(build, card))


def test_an_interrupted_and_resumed_detection_run_ends_with_the_same_weights(tiny, tmp_path, one_thread):
    """A detector stopped after epoch 1 of 2 and resumed ends with the weights, and the log, of a run that never
    stopped."""
    config = TrainConfig("tiny_detector", epochs=2, batch_size=8, image_size=64, options={"shapes_images": 24})
    whole, resumed = whole_and_resumed(config, tmp_path)
    assert resumed["parameter_digest"] == whole["parameter_digest"]

    def results(run: str) -> list[tuple]:
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(r["epoch"], r["train_loss"], r["train_loss_box_reg"], r["test_map"], r["test_map50"]) for r in rows]

    assert [row[0] for row in results("cut")] == [1, 2]
    assert results("cut") == results("whole")


# --- the metric: COCOeval against the project's VOC-style mAP ----------------------------------------------------

def _noisy_detections(dataset, seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """Per image: every true box jittered (each side by up to a tenth of the box), a random score, sometimes the
    wrong class, and two random boxes: detections whose AP lies well between 0 and 1 at most IoU thresholds."""
    generator = torch.Generator().manual_seed(seed)
    detections = {}
    for index in range(len(dataset)):
        _, target = dataset[index]
        boxes = target["boxes"]
        size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        jittered = boxes + (torch.rand(boxes.shape, generator=generator) - 0.5) * size * 0.2
        wrong = torch.rand(len(boxes), generator=generator) < 0.2
        labels = torch.where(wrong, 3 - target["labels"], target["labels"])  # 1 <-> 2
        spurious = torch.rand(2, 2, generator=generator) * 40
        spurious = torch.cat([spurious, spurious + 8 + torch.rand(2, 2, generator=generator) * 20], 1)
        detections[target["image_id"]] = {
            "boxes": torch.cat([jittered, spurious]).clamp(0, 64),
            "labels": torch.cat([labels, torch.randint(1, 3, (2,), generator=generator)]),
            "scores": torch.rand(len(boxes) + 2, generator=generator)}
    return detections


def test_coco_map_agrees_with_the_voc_style_map_on_the_same_detections():
    """pycocotools' AP@.5 is the VOC-style mAP@0.5 of models/detection/evaluation.py up to COCO's sampling of the
    precision-recall curve at 101 recall points (VOC 2010+ integrates it exactly), and AP@[.5:.95] is the mean of
    the VOC-style mAP at the ten IoU thresholds 0.5, 0.55, ..., 0.95."""
    dataset = detection_data.shapes("test", 64, num_classes=2, seed=0)
    detections = _noisy_detections(dataset)
    coco = detection_data.coco_evaluate(dataset.coco, detection_data.coco_results(detections, dataset, False))
    predictions = [detections[i] for i in dataset.image_ids]
    targets = [dataset[i][1] for i in range(len(dataset))]
    voc = {t: mean_average_precision(predictions, targets, iou_threshold=t) for t in
           [0.5 + 0.05 * k for k in range(10)]}
    assert 0.2 < coco["map"] < 0.8 and 0.2 < coco["map50"] < 0.95  # a curve, not a trivial 0 or 1
    assert coco["map50"] == pytest.approx(voc[0.5], abs=0.01)
    assert coco["map"] == pytest.approx(sum(voc.values()) / len(voc), abs=0.01)
    # Perfect detections score 1 in both.
    perfect = {t["image_id"]: {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
               for t in targets}
    assert detection_data.coco_evaluate(dataset.coco, detection_data.coco_results(perfect, dataset, False)) == {
        "map": 1.0, "map50": 1.0}


# --- COCO folders ------------------------------------------------------------------------------------------------

def write_coco(root: Path, n_train: int = 6, n_val: int = 4, masks: str = "rle") -> Path:
    """A COCO-layout folder of shapes images (PNG) with boxes, and masks as RLE or polygons (the box's outline)."""
    from pycocotools import mask as mask_utils
    from torchvision.io import write_png

    for split, count, seed in (("train", n_train, 0), ("val", n_val, 1)):
        images, targets = detection_data.make_shapes_dataset(count, num_classes=2, seed=seed, with_masks=True)
        (root / split).mkdir(parents=True)
        dataset = {"images": [], "annotations": [],
                   "categories": [{"id": 7, "name": "rectangle"}, {"id": 9, "name": "ellipse"}]}
        for index, (image, target) in enumerate(zip(images, targets, strict=True)):
            write_png((image * 255).round().to(torch.uint8), str(root / split / f"{index:03d}.png"))
            dataset["images"].append({"id": 100 + index, "file_name": f"{index:03d}.png", "width": 64, "height": 64})
            for (x1, y1, x2, y2), label, mask in zip(target["boxes"].tolist(), target["labels"].tolist(),
                                                     target["masks"], strict=True):
                if masks == "rle":
                    segmentation = mask_utils.encode(mask.numpy().copy(order="F"))
                    segmentation["counts"] = segmentation["counts"].decode("ascii")
                else:
                    segmentation = [[x1, y1, x2, y1, x2, y2, x1, y2]]
                dataset["annotations"].append({
                    "id": 1000 + len(dataset["annotations"]), "image_id": 100 + index,
                    "category_id": {1: 7, 2: 9}[label], "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0,
                    "area": float(mask.sum()), "segmentation": segmentation})
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(dataset))
    return root


def test_a_coco_folder_is_read_with_its_masks(tmp_path):
    """Boxes from COCO's [x, y, w, h], category ids 7 and 9 as labels 1 and 2 (0 for YOLOv3, which has no
    background), RLE masks equal to the generated ones, polygons rasterised by pycocotools."""
    root = write_coco(tmp_path / "rle")
    train_set, val_set = detection_data.coco(root, with_masks=True)
    images, targets = detection_data.make_shapes_dataset(4, num_classes=2, seed=1, with_masks=True)
    assert (len(train_set), len(val_set)) == (6, 4) and train_set.categories == ["rectangle", "ellipse"]
    for index in range(4):
        image, target = val_set[index]
        assert target["image_id"] == 100 + index
        assert torch.equal(target["boxes"], targets[index]["boxes"])
        assert torch.equal(target["labels"], targets[index]["labels"])
        assert torch.equal(target["masks"], targets[index]["masks"])
        assert (image - images[index]).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG
    _, yolo_val = detection_data.coco(root, with_masks=False, first_label=0)
    assert torch.equal(yolo_val[0][1]["labels"], targets[0]["labels"] - 1) and "masks" not in yolo_val[0][1]
    _, polygons = detection_data.coco(write_coco(tmp_path / "polygons", masks="polygon"), with_masks=True)
    _, target = polygons[0]
    for box, mask in zip(target["boxes"].long().tolist(), target["masks"], strict=True):
        x1, y1, x2, y2 = box
        assert mask[y1 + 1: y2 - 1, x1 + 1: x2 - 1].all() and mask.sum() <= (x2 - x1 + 1) * (y2 - y1 + 1)


def test_train_on_a_coco_folder_from_the_command_line(tiny, tmp_path, capsys, one_thread):
    root = write_coco(tmp_path / "coco")
    out = tmp_path / "run"
    code = main(["train", "tiny_detector", "--data", "coco", str(root), "--epochs", "1", "--batch-size", "2",
                 "--image-size", "64", "--out", str(out)])
    assert code == 0, capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "map" and 0.0 <= summary["final_test_map"] <= 1.0
    row = json.loads((out / "metrics.jsonl").read_text())
    assert {"train_loss_classifier", "train_loss_box_reg", "test_map", "test_map50"} <= set(row)
    # The summed loss is the sum of the logged components (each a mean over the epoch's images).
    assert row["train_loss"] == pytest.approx(row["train_loss_classifier"] + row["train_loss_box_reg"], rel=1e-5)


def test_a_detector_trained_on_a_coco_folder_predicts_its_categories(tiny, tmp_path, capsys, one_thread):
    """paperzoo predict --checkpoint: the run's model with the folder's category names; the labels of this
    detector start at 1 (0: background), so label 1 is the first category."""
    from safetensors.torch import load_file
    from torchvision.io import decode_image

    root = write_coco(tmp_path / "coco")
    run = tmp_path / "run"
    assert main(["train", "tiny_detector", "--data", "coco", str(root), "--epochs", "1", "--batch-size", "2",
                 "--image-size", "64", "--out", str(run)]) == 0
    capsys.readouterr()
    image = root / "val" / "000.png"
    assert main(["predict", "tiny_detector", str(image), "--checkpoint", str(run), "--threshold", "0",
                 "--out", str(tmp_path / "drawn")]) == 0
    printed = capsys.readouterr().out
    count = int(re.search(r"(\d+) detections with score >= 0", printed)[1])
    labels = re.findall(r"^  (.+) [01]\.\d\d at \(", printed, flags=re.M)
    assert count == len(labels) > 0 and set(labels) <= {"rectangle", "ellipse"}, printed
    model = paperzoo.create_model("tiny_detector", num_classes=3, min_size=64, max_size=64)  # background + 2
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    with torch.no_grad():
        expected = model.eval()([decode_image(str(image)).float() / 255])[0]
    assert count == len(expected["boxes"])
    assert labels == [("rectangle", "ellipse")[int(k) - 1] for k in expected["labels"]]


def _edit(root: Path, change) -> None:
    path = root / "annotations" / "instances_val.json"
    dataset = json.loads(path.read_text())
    change(dataset)
    path.write_text(json.dumps(dataset))


BAD_INPUTS = {
    "a box outside its image": (lambda d: d["annotations"][2]["bbox"].__setitem__(0, 60.0),
                                r"instances_val.json: annotation 1002 \(image 10\d\) has the box .* outside its 64x64"),
    "a box with x2 < x1": (lambda d: d["annotations"][1]["bbox"].__setitem__(2, -5.0),
                           r"instances_val.json: annotation 1001 \(image 10\d\) .* x2 <= x1"),
    "an unknown category": (lambda d: d["annotations"][0].__setitem__("category_id", 3),
                            r"annotation 1000 \(image 100\) has category id 3, which is not among the file's "
                            r"categories \(7, 9\)"),
    "a missing image file": (lambda d: d["images"][1].__setitem__("file_name", "missing.png"),
                             r"instances_val.json: image 101's file .*val/missing.png does not exist"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_coco_annotations_are_refused_before_anything_is_written(case, tiny, tmp_path, capsys):
    change, message = BAD_INPUTS[case]
    root = write_coco(tmp_path / "coco", n_train=1, n_val=3)
    _edit(root, change)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train(TrainConfig("tiny_detector", data="coco", data_path=str(root), epochs=1, out=str(out)))
    assert not out.exists()
    assert main(["train", "tiny_detector", "--data", "coco", str(root), "--out", str(out)]) == 2
    assert "instances_val.json" in capsys.readouterr().err
    assert not out.exists()


def test_an_unreadable_coco_image_is_named_and_leaves_no_run(tiny, tmp_path, capsys):
    """torchvision's decoder said "RuntimeError: operator(), .../decode_png.cpp:79, Out of bound read in
    decode_png. Probably, the input image is corrupted", from inside the DataLoader, after config.json was written."""
    root = write_coco(tmp_path / "coco", n_train=2, n_val=1)
    broken = root / "train" / "001.png"
    broken.write_bytes(broken.read_bytes()[:100])
    out = tmp_path / "run"
    code = main(["train", "tiny_detector", "--data", "coco", str(root), "--epochs", "1", "--batch-size", "2",
                 "--image-size", "64", "--out", str(out)])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith(f"error: {broken} cannot be read as an image (") and error.endswith(
        "); remove it or replace it") and "\n" not in error and ".cpp" not in error, error
    assert not out.exists()


def test_a_coco_folder_without_its_annotations_is_refused(tiny, tmp_path):
    root = write_coco(tmp_path / "coco", n_train=1, n_val=1)
    (root / "annotations" / "instances_val.json").unlink()
    with pytest.raises(ValueError, match=r"no annotation file .*annotations/instances_val\*.json"):
        train(TrainConfig("tiny_detector", data="coco", data_path=str(root), out=str(tmp_path / "run")))


def test_an_image_size_the_model_cannot_take_and_bad_shapes_options_are_refused(tiny, tmp_path):
    """SSD's fixed layer stack does not fit 128-pixel images and YOLOv3 takes multiples of 32: refused before
    anything is built or written, naming the model and the reason, not a convolution's error mid-run."""
    out = str(tmp_path / "run")
    with pytest.raises(ValueError, match=r"--image-size 128 does not suit ssd300_vgg16: .*Kernel size"):
        train(TrainConfig("ssd300_vgg16", image_size=128, out=out))
    with pytest.raises(ValueError, match=r"--image-size 100 does not suit yolov3: image_size must be a multiple of 32"):
        train(TrainConfig("yolov3", image_size=100, out=out))
    with pytest.raises(ValueError, match=r"--shapes-classes must be 1 to 8, got 9"):
        train(TrainConfig("tiny_detector", out=out, options={"shapes_classes": 9}))
    with pytest.raises(ValueError, match=r"--clip-grad must be positive, got -1"):
        train(TrainConfig("tiny_detector", out=out, options={"clip_grad": -1}))
    # the data's classes and the background: 3 (it trained a head of 7, silently)
    with pytest.raises(ValueError, match=r"^--model-kwargs num_classes=7: the data gives num_classes=3; leave"):
        train(TrainConfig("tiny_detector", out=out, model_kwargs={"num_classes": 7}))
    assert not (tmp_path / "run").exists()
