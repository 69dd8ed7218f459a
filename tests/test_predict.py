"""``paperzoo predict`` end to end on real photographs that ship with scikit-learn (china.jpg, flower.jpg), with
weights placed in a temporary torch.hub cache as torchvision publishes them (random values: the test checks that
the command reports what the model computes, not that a temple is recognised)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import paperzoo
from paperzoo.cli import main
from weights_helpers import caches, photo, place_in_torch_cache, randomize_batchnorm

__all__ = ["caches"]  # a fixture, used by name


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    from sklearn.datasets import load_sample_image

    paths = []
    for name in ("china.jpg", "flower.jpg"):
        Image.fromarray(load_sample_image(name)).save(tmp_path / name)
        paths.append(tmp_path / name)
    return paths


def test_classifier_prints_the_models_top_k_labels(caches: Path, photos: list[Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    place_in_torch_cache(randomize_batchnorm(torchvision.models.resnet18()), "resnet18", "IMAGENET1K_V1")
    assert main(["predict", "resnet18", *map(str, photos), "--pretrained", "--top-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert "IMAGENET1K_V1 weights" in printed and "random" not in printed

    model = paperzoo.create_model("resnet18", pretrained=True).eval()
    preprocess = paperzoo.transforms(model)
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    rows = re.findall(r"^\s+\d\. (.+?)\s+([\d.]+)%$", printed, flags=re.M)
    assert len(rows) == 6  # 3 per photo
    for index, path in enumerate(photos):
        with torch.no_grad():
            probabilities = model(preprocess(Image.open(path).convert("RGB")).unsqueeze(0)).softmax(-1)[0]
        top = probabilities.topk(3)
        expected = [(categories[i], f"{100 * p:.2f}")
                    for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]
        assert rows[3 * index: 3 * index + 3] == expected


def test_random_weights_work_and_say_so(photos: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "resnet18", str(photos[0]), "--top-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert "random weights" in printed and "--pretrained" in printed
    assert len(re.findall(r"^\s+\d\. ", printed, flags=re.M)) == 2


@pytest.mark.parametrize("make_input, message", [
    (lambda folder: folder / "missing.jpg", "no image file at"),
    (lambda folder: (folder / "notes.jpg").write_text("not a picture") and folder / "notes.jpg", "cannot read"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], make_input,
                                          message: str) -> None:
    assert main(["predict", "resnet18", str(make_input(tmp_path))]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error


def test_a_model_that_takes_no_images_is_refused(photos: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "gpt2", str(photos[0])]) == 2
    assert "gpt2's task is language-model; paperzoo predict takes image classifiers" in capsys.readouterr().err


@pytest.mark.heavy
def test_detector_draws_its_boxes(caches: Path, tmp_path: Path, photos: list[Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    detector = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, norm_layer=torchvision.ops.misc.FrozenBatchNorm2d)
    with torch.no_grad():
        randomize_batchnorm(detector)
        detector.roi_heads.box_predictor.cls_score.bias[18] += 12.0  # "dog" wins most proposals
    place_in_torch_cache(detector, "fasterrcnn_resnet50_fpn", "COCO_V1")
    out = tmp_path / "drawn"
    assert main(["predict", "fasterrcnn_resnet50_fpn", str(photos[0]), "--pretrained", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    count = int(re.search(r"(\d+) detections with score >= 0.5", printed)[1])
    assert count > 0 and len(re.findall(r"^  .+ [01]\.\d\d at \(\d+, \d+, \d+, \d+\)$", printed, flags=re.M)) == count
    drawn = Image.open(out / "china_fasterrcnn_resnet50_fpn.png")
    assert drawn.size == (640, 427)
    changed = (torch.from_numpy(np.asarray(drawn)).permute(2, 0, 1) != photo()).any(0)  # (H, W)
    x1, y1, x2, y2 = map(int, re.search(r" at \((\d+), (\d+), (\d+), (\d+)\)$", printed, flags=re.M).groups())
    assert changed[min(y2, 426), (x1 + x2) // 2]  # the bottom edge of a reported box is drawn
    assert not changed.all()


@pytest.mark.heavy
def test_segmentation_writes_a_colour_overlay(tmp_path: Path, photos: list[Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "drawn"
    assert main(["predict", "fcn_resnet50", str(photos[1]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "random weights" in printed and "classes:" in printed or "background only" in printed
    drawn = Image.open(out / "flower_fcn_resnet50.png")
    assert drawn.size == Image.open(photos[1]).size


# --- the weights of a paperzoo train run (--checkpoint) -------------------------------------------------------

SMALL_RESNET = ("stem_width=16", "stage_widths=(16,32,64,128)")


def squares(root: Path) -> Path:
    """An ImageFolder tree of red and blue squares."""
    for name, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20 + i, 20), colour).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("data", ["folder", "digits"])
def test_a_classifier_trained_by_paperzoo_train_predicts_with_its_classes_and_preprocessing(
        data: str, tmp_path: Path, photos: list[Path], capsys: pytest.CaptureFixture[str], one_thread) -> None:
    """predict had no way to the weights a user trained: --checkpoint RUN gives the run's model its class names
    and each image as training gave it (squashed to the run's size; greyscale for the one-channel digits). The
    expected values are computed here from model.safetensors and torchvision's transforms, not from the run's
    config.json."""
    from safetensors.torch import load_file
    from torchvision import transforms

    run = tmp_path / "run"
    source = ["--data", "folder", str(squares(tmp_path / "squares"))] if data == "folder" else []
    assert main(["train", "resnet18", *source, "--epochs", "1", "--image-size", "32", "--batch-size", "64",
                 "--model-kwargs", *SMALL_RESNET, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["predict", "resnet18", *map(str, photos), "--checkpoint", str(run), "--top-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"resnet18 trained by paperzoo train ({run})" in printed and "random" not in printed
    classes, channels = (["blue", "red"], 3) if data == "folder" else ([str(d) for d in range(10)], 1)
    model = paperzoo.create_model("resnet18", num_classes=len(classes), in_chans=channels, stem_width=16,
                                  stage_widths=(16, 32, 64, 128))
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    loaded = paperzoo.from_pretrained(run)  # the run's folder is a model folder too
    assert not loaded.training and all(torch.equal(a, b) for a, b in zip(
        loaded.state_dict().values(), model.state_dict().values(), strict=True))
    steps = [transforms.Resize((32, 32)), *([transforms.Grayscale(1)] if channels == 1 else []), transforms.ToTensor()]
    # ... whose preprocessing is the run's, bit for bit, not the published weights' (ImageNet at 224 before)
    photo = Image.open(photos[0]).convert("RGB")
    assert torch.equal(paperzoo.transforms(loaded)(photo), transforms.Compose(steps)(photo))
    cfg = loaded.pretrained_cfg
    assert (cfg["input_size"], cfg["mean"], cfg["std"], cfg["label_names"]) == (
        (channels, 32, 32), (0.0,) * channels, (1.0,) * channels, classes)
    rows = re.findall(r"^\s+\d\. (.+?)\s+([\d.]+)%$", printed, flags=re.M)
    assert len(rows) == 4
    for index, path in enumerate(photos):
        with torch.no_grad():
            image = transforms.Compose(steps)(Image.open(path).convert("RGB"))
            probabilities = model.eval()(image.unsqueeze(0)).softmax(-1)[0]
        top = probabilities.topk(2)
        expected = [(classes[i], f"{100 * p:.2f}") for p, i in zip(top.values.tolist(), top.indices.tolist(),
                                                                   strict=True)]
        assert rows[2 * index: 2 * index + 2] == expected


def test_a_segmentation_run_predicts_its_own_classes(tmp_path: Path, photos: list[Path],
                                                     capsys: pytest.CaptureFixture[str], one_thread) -> None:
    """A U-Net of valid convolutions trained on the generated shapes: predicted through the mirrored tile, as in
    training; the overlay has the photo's size and the summary names the run's classes."""
    from paperzoo.training.segmentation_data import SHAPE_CLASSES

    run = tmp_path / "run"
    assert main(["train", "unet", "--epochs", "1", "--image-size", "32", "--model-kwargs", "base_width=4",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    out = tmp_path / "drawn"
    assert main(["predict", "unet", str(photos[1]), "--checkpoint", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    found = re.search(r"flower.jpg: (?:\d+ classes: (.+)|background only) → ", printed)
    assert found, printed
    named = [part.rsplit(" ", 1)[0] for part in (found[1] or "").split(", ") if part]
    assert set(named) <= set(SHAPE_CLASSES[1:])
    assert Image.open(out / "flower_unet.png").size == Image.open(photos[1]).size


def test_a_checkpoint_that_does_not_fit_is_one_line(tmp_path: Path, photos: list[Path],
                                                    capsys: pytest.CaptureFixture[str], one_thread) -> None:
    import json

    run = tmp_path / "run"
    assert main(["train", "resnet18", "--epochs", "1", "--image-size", "32", "--model-kwargs", *SMALL_RESNET,
                 "--out", str(run)]) == 0
    capsys.readouterr()
    config = json.loads((run / "config.json").read_text())
    del config["inference"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    for arguments, message in [
        (["resnet18", "--checkpoint", str(run), "--pretrained"], "give --checkpoint (the weights of a paperzoo "
                                                                  "train run) or --pretrained (the published ones)"),
        (["resnet34", "--checkpoint", str(run)], f"--checkpoint {run} holds a run of 'resnet18', not 'resnet34'"),
        (["resnet18", "--checkpoint", str(tmp_path)], f"--checkpoint {tmp_path}: no config.json in {tmp_path}"),
        (["resnet18", "--checkpoint", str(tmp_path / "old")], "its config.json has no \"inference\" entry"),
    ]:
        assert main(["predict", arguments[0], str(photos[0]), *arguments[1:]]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and "\n" not in error, error
    with pytest.raises(ValueError, match="is a paperzoo train run of resnet18, whose model from_pretrained does not"):
        paperzoo.from_pretrained(tmp_path / "old")
    with pytest.raises(TypeError, match="its config.json fixes the model; num_classes cannot change it"):
        paperzoo.from_pretrained(run, num_classes=3)


def test_greyscale_networks_get_grey_images_and_capsule_lengths_are_printed_as_they_are(
        tmp_path: Path, photos: list[Path], capsys: pytest.CaptureFixture[str], one_thread) -> None:
    """CapsNet, ODE-Net and U-Net take one channel: predict failed on every photo ("expects (N, 1, H, W) ... got 3
    channels"). CapsNet's scores are capsule lengths, the probability of each digit on its own: printed, not their
    softmax."""
    from torchvision.transforms import v2

    torch.manual_seed(0)
    assert main(["predict", "capsnet", str(photos[0]), "--top-k", "3"]) == 0
    rows = re.findall(r"^\s+\d\. (.+?)\s+([\d.]+)%$", capsys.readouterr().out, flags=re.M)
    torch.manual_seed(0)
    model = paperzoo.create_model("capsnet").eval()  # the same draws: the same random weights
    steps = v2.Compose([v2.Grayscale(1), v2.ToImage(), v2.Resize(28, antialias=True), v2.CenterCrop(28),
                        v2.ToDtype(torch.float32, scale=True)])
    with torch.no_grad():
        lengths = model(steps(Image.open(photos[0]).convert("RGB")).unsqueeze(0))[0]
    top = lengths.topk(3)
    assert rows == [(f"class {i}", f"{100 * p:.2f}") for p, i in zip(top.values.tolist(), top.indices.tolist(),
                                                                      strict=True)]
    assert main(["predict", "odenet", str(photos[0]), "--top-k", "1"]) == 0
    assert len(re.findall(r"^\s+1\. class \d ", capsys.readouterr().out, flags=re.M)) == 1
