"""The data the training command and the learning tests use: real images that ship with a package, or yours.

* :func:`digits` is scikit-learn's bundled handwritten digits (1,797 greyscale 8×8 images of 0–9, from the
  UCI "Optical Recognition of Handwritten Digits" set): real data with no download. It is resized to the
  input size a model needs (28×28 for the MNIST-sized models, 32×32 or the card's size for CNNs).
* :func:`image_folder` reads an ImageFolder-style tree (``root/<class>/<image>``) with torchvision's reader,
  for users' own images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def digits(split: str = "train", image_size: int = 8, channels: int = 1, test_fraction: float = 0.2,
           seed: int = 0, normalize: tuple[Sequence[float], Sequence[float]] | None = None) -> TensorDataset:
    """scikit-learn's digits as a ``TensorDataset`` of ``(images (N, channels, size, size) in [0, 1], labels)``.

    The split is fixed by ``seed`` and stratified (the same share of each digit in both parts), so every run,
    resumed or distributed, sees the same train and test images. Images are scaled from 0–16 to [0, 1],
    resized bilinearly to ``image_size`` and repeated to ``channels``; ``normalize=(mean, std)`` then normalises
    them per channel, as the published weights a fine-tuning run starts from expect.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the digits data needs scikit-learn: pip install 'paperzoo[train]'") from err
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    test_mask = torch.zeros(len(labels), dtype=torch.bool)
    for digit in range(10):  # stratified: the same fraction of every class goes to the test part
        members = torch.nonzero(labels == digit).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        test_mask[members[: round(test_fraction * len(members))]] = True
    keep = test_mask if split == "test" else ~test_mask
    images, labels = images[keep], labels[keep]
    if image_size != 8:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
        images = images.clamp_(0.0, 1.0)
    images = images.expand(-1, channels, -1, -1).contiguous()
    if normalize is not None:
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in normalize)
        images = (images - mean) / std
    return TensorDataset(images, labels)


def read_rgb(path: str | Path) -> Any:
    """The image at ``path`` as an RGB PIL image (torchvision's ImageFolder reader); one that cannot be read is a
    ValueError naming the file, not PIL's error from inside a DataLoader (``UnidentifiedImageError`` with a
    reader object's repr, "image file is truncated")."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image Pillow can read; remove it or replace it") from None
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path} cannot be read as an image ({err}); remove it or replace it") from None


def image_transform(image_size: int, channels: int = 3,
                    normalize: tuple[Sequence[float], Sequence[float]] | None = None) -> Any:
    """An RGB PIL image → the ``(channels, image_size, image_size)`` tensor a classifier trained on an
    ImageFolder tree sees: squashed to the square (by Pillow), greyscale for one channel, in [0, 1] or
    normalised. Training, ``paperzoo predict --checkpoint`` and ``paperzoo.transforms`` of the run's model use
    this one pipeline, so a prediction sees what training saw."""
    from torchvision.transforms import v2

    steps = [v2.Resize((image_size, image_size))]  # on the PIL image, before it is a tensor: Pillow's resampling
    if channels == 1:
        steps.append(v2.Grayscale(num_output_channels=1))
    steps += to_unit_range()  # → (channels, H, W) in [0, 1]
    if normalize is not None:
        steps.append(v2.Normalize(list(normalize[0]), list(normalize[1])))
    return v2.Compose([*steps, v2.ToPureTensor()])


def to_unit_range() -> list[Any]:
    """The ``torchvision.transforms.v2`` steps from a PIL image or uint8 tensor to float32 in [0, 1], dividing by
    255 as ``ToTensor`` and ``decode_image(...) / 255`` do (``ToDtype(scale=True)`` multiplies by 1/255, which
    differs in the last bit: a prediction would not see exactly what training saw)."""
    import functools

    from torchvision.transforms import v2

    return [v2.ToImage(), v2.ToDtype(torch.float32), v2.Lambda(functools.partial(torch.div, other=255.0))]


def image_folder(root: str | Path, image_size: int, channels: int = 3, test_fraction: float = 0.2,
                 seed: int = 0, normalize: tuple[Sequence[float], Sequence[float]] | None = None
                 ) -> tuple[Dataset, Dataset, list[str]]:
    """Train and test parts of an ImageFolder tree: ``root/train`` and ``root/val`` (or ``root/test``) if they
    exist, else a fixed random split of ``root``; ``normalize=(mean, std)`` normalises the images per channel.
    Returns ``(train, test, class_names)``."""
    from torchvision import datasets

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.rglob("*") if p.is_file()):
        raise ValueError(f"dataset folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}) in class folders")
    transform = image_transform(image_size, channels, normalize)

    def read(folder: Path) -> datasets.ImageFolder:
        try:
            tree = datasets.ImageFolder(str(folder), transform=transform, loader=read_rgb)
        except (FileNotFoundError, RuntimeError) as err:  # torchvision's words for "no class folders with images"
            raise ValueError(f"cannot read images from {folder}: {err}") from None
        if len(tree.classes) < 2:  # it trained, at a loss of 0 and 100% accuracy, to say the one class it knows
            raise ValueError(f"{folder} has one class folder ({tree.classes[0]}/); a classifier learns from two or "
                             "more, one folder of images per class")
        return tree

    held_out = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
    if (root / "train").is_dir() and held_out is not None:
        train, test = read(root / "train"), read(held_out)
        if train.classes != test.classes:
            raise ValueError(f"{root / 'train'} and {held_out} have different classes")
        return train, test, train.classes
    full = read(root)
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, round(test_fraction * len(full)))
    return Subset(full, order[cut:]), Subset(full, order[:cut]), full.classes
