"""The data ``paperzoo train`` gives the semantic-segmentation models: generated scenes of shapes (the embedded
default, no download) or a folder in PASCAL VOC's layout.

An example is ``(image (3, S, S) float, mask (S, S) int64, instances (S, S) int64)``: the mask holds class
indices (0 the background) and :data:`~paperzoo.layers.segmentation.IGNORE_INDEX` (255) for pixels that count
for nothing (VOC's object borders); ``instances`` numbers the objects (0: none), from which U-Net's weight map
(eq. 2) is computed.

* :func:`shapes`: squares, discs and triangles of random size, position and shade on a textured background,
  partly overlapping (so objects touch, the case U-Net's weight map exists for), deterministic by seed.
  Each class has its own hue, jittered, under pixel noise and a smooth coloured background texture: a single
  pixel is ambiguous, so a network must pool evidence over neighbourhoods and find the outlines.
* :func:`voc`: ``JPEGImages/<id>.jpg`` and ``SegmentationClass/<id>.png`` (palette PNGs whose indices are the
  classes), the ids from ``ImageSets/Segmentation/{train,val}.txt`` when present, else a fixed random split;
  ``SegmentationObject/<id>.png`` (instances) when present. Every file is checked when the set is read, before
  training starts: a missing mask, a mask that is not a palette or greyscale PNG, or one whose size differs
  from its image is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from paperzoo.layers.segmentation import IGNORE_INDEX
from paperzoo.training.data import read_rgb

SHAPE_CLASSES = ["background", "square", "disc", "triangle"]
VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
# Each shape class's mean colour (RGB in [0, 1]); a shape's own shade is jittered around it.
_HUES = torch.tensor([[0.85, 0.25, 0.2], [0.2, 0.75, 0.3], [0.25, 0.35, 0.9]])


class SegmentationSet(Dataset):
    """Images, masks and instance maps held in memory (the generated scenes)."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, instances: torch.Tensor) -> None:
        self.images, self.masks, self.instances = images, masks, instances

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index], self.instances[index]


def shapes(split: str = "train", image_size: int = 64, count: int | None = None, seed: int = 0) -> SegmentationSet:
    """``count`` generated scenes (default: 256 for train, 64 for test), each of 2 to 4 shapes; the test scenes
    come from another random stream than the training ones, so they are never the same pictures."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    count = count or (256 if split == "train" else 64)
    generator = torch.Generator().manual_seed(seed * 2 + (split == "test") + 1_000)
    size = image_size
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    images = torch.empty(count, 3, size, size)
    masks = torch.zeros(count, size, size, dtype=torch.int64)
    instances = torch.zeros(count, size, size, dtype=torch.int64)
    for i in range(count):
        # A smooth coloured texture: 4x4 random colours blown up bilinearly, darker than most shapes.
        coarse = 0.1 + 0.3 * torch.rand(1, 3, 4, 4, generator=generator)
        image = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]
        num_shapes = int(torch.randint(2, 5, (1,), generator=generator))
        for instance in range(1, num_shapes + 1):
            label = int(torch.randint(1, len(SHAPE_CLASSES), (1,), generator=generator))
            radius = float(torch.empty(1).uniform_(size / 8, size / 4.5, generator=generator))
            cy, cx = (float(v) for v in torch.empty(2).uniform_(radius, size - radius, generator=generator))
            if label == 1:
                inside = ((ys - cy).abs() <= radius) & ((xs - cx).abs() <= radius)
            elif label == 2:
                inside = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
            else:  # an upright triangle: below the apex, above the base, inside both slanted sides
                top, bottom = cy - radius, cy + radius
                half_width = (ys - top) / (2 * radius) * radius * 1.15
                inside = (ys >= top) & (ys <= bottom) & ((xs - cx).abs() <= half_width)
            shade = (_HUES[label - 1] + 0.08 * torch.randn(3, generator=generator)).clamp(0, 1)
            image[:, inside] = shade[:, None]
            masks[i][inside] = label  # a later shape covers an earlier one, as in a photograph
            instances[i][inside] = instance
        images[i] = (image + 0.1 * torch.randn(3, size, size, generator=generator)).clamp(0, 1)
    return SegmentationSet(images, masks, instances)


class VOCSegmentation(Dataset):
    """A list of ``(image, mask, objects or None)`` files in VOC's layout, read and resized to ``size × size``
    when an example is taken (bilinear for the image, nearest for the masks, so no label is invented)."""

    def __init__(self, files: list[tuple[Path, Path, Path | None]], size: int) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image_path, mask_path, objects_path = self.files[index]
        image = resized_image(read_rgb(image_path), self.size)  # its header was checked
        mask = _resize_labels(_read_labels(mask_path), self.size)
        if objects_path is not None:
            instances = _resize_labels(_read_labels(objects_path), self.size)
            instances[instances == IGNORE_INDEX] = 0  # VOC's object borders belong to no object
        else:  # no object masks: the whole foreground as one object (class balance only, no border term)
            instances = ((mask > 0) & (mask != IGNORE_INDEX)).long()
        return image, mask, instances


def image_transform(size: int) -> Any:
    """An RGB PIL image (or uint8 tensor) → the ``(3, size, size)`` tensor in [0, 1] that a segmentation model
    is trained on: squashed to the square, bilinear with antialiasing (torch's), clamped. Training, ``paperzoo
    predict --checkpoint`` and ``paperzoo.transforms`` of the run's model use this one pipeline."""
    from torchvision.transforms import v2

    from paperzoo.training.data import to_unit_range

    return v2.Compose([*to_unit_range(), v2.Resize((size, size), antialias=True),
                       v2.Lambda(functools.partial(torch.clamp, min=0.0, max=1.0)), v2.ToPureTensor()])


def resized_image(image: Any, size: int) -> torch.Tensor:
    """:func:`image_transform` of one image."""
    return image_transform(size)(image)


def _read_labels(path: Path) -> torch.Tensor:
    """A palette (or greyscale) PNG's indices as an ``(H, W)`` int64 tensor."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as file:
            return torch.from_numpy(np.array(file, dtype=np.int64))
    except OSError as err:  # a header that reads over data that does not ("image file is truncated")
        raise ValueError(f"{path} cannot be read as a mask ({err}); remove it or replace it") from None


def _resize_labels(labels: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(labels[None, None].float(), size=(size, size), mode="nearest")[0, 0].long()


def _check_pair(image_path: Path, mask_path: Path, what: str = "mask") -> int:
    """Check one mask against its image from the files' headers and its values; returns its largest class."""
    from PIL import Image, UnidentifiedImageError

    if not mask_path.is_file():
        raise ValueError(f"{image_path} has no {what} {mask_path}: every image listed needs one")
    try:
        with Image.open(image_path) as image:
            image_size = image.size
        with Image.open(mask_path) as mask:
            mask_size, mode = mask.size, mask.mode
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read {image_path} or its {what} {mask_path}: {err}") from None
    if mode not in ("P", "L"):
        raise ValueError(f"{what} {mask_path} is a {mode} image; VOC masks are palette (P) or greyscale (L) PNGs "
                         "whose pixel values are the class indices (255: ignore)")
    if mask_size != image_size:
        raise ValueError(f"{what} {mask_path} is {mask_size[0]}x{mask_size[1]} but its image {image_path} is "
                         f"{image_size[0]}x{image_size[1]}: a mask must have its image's size")
    labels = _read_labels(mask_path)
    labels = labels[labels != IGNORE_INDEX]
    return int(labels.max()) if labels.numel() else 0


def voc(root: str | Path, size: int, test_fraction: float = 0.2, seed: int = 0
        ) -> tuple[VOCSegmentation, VOCSegmentation, list[str]]:
    """Train and test parts of a VOC-layout folder and the class names (VOC's 21 when every label fits them,
    else ``class 0`` … ``class K-1`` up to the largest label found). Every mask is checked here."""
    root = Path(root)
    images_dir, masks_dir = root / "JPEGImages", root / "SegmentationClass"
    for folder in (root, images_dir, masks_dir):
        if not folder.is_dir():
            raise ValueError(f"{folder} does not exist: --data voc PATH takes a folder in PASCAL VOC's layout "
                             "(PATH/JPEGImages/*.jpg and PATH/SegmentationClass/*.png)")
    lists = root / "ImageSets" / "Segmentation"
    if (lists / "train.txt").is_file() and (lists / "val.txt").is_file():
        splits = {name: [line.strip() for line in (lists / f"{part}.txt").read_text().splitlines() if line.strip()]
                  for name, part in (("train", "train"), ("test", "val"))}
    else:
        ids = sorted(p.stem for p in masks_dir.glob("*.png"))
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()
        cut = max(1, round(test_fraction * len(ids)))
        splits = {"train": [ids[i] for i in order[cut:]], "test": [ids[i] for i in order[:cut]]}
    largest = 0
    parts = {}
    for name, ids in splits.items():
        if not ids:
            raise ValueError(f"{masks_dir} holds no masks for the {name} part: VOC masks are SegmentationClass/<id>.png"
                             if not (lists / "train.txt").is_file() else
                             f"{lists / ('train.txt' if name == 'train' else 'val.txt')} lists no image ids")
        files = []
        for image_id in ids:
            image_path = next((images_dir / f"{image_id}{suffix}" for suffix in (".jpg", ".jpeg", ".png")
                               if (images_dir / f"{image_id}{suffix}").is_file()), None)
            if image_path is None:
                raise ValueError(f"{images_dir / (image_id + '.jpg')} does not exist: the mask "
                                 f"{masks_dir / (image_id + '.png')} has no image")
            largest = max(largest, _check_pair(image_path, masks_dir / f"{image_id}.png"))
            objects = root / "SegmentationObject" / f"{image_id}.png"
            if objects.is_file():
                _check_pair(image_path, objects, what="object mask")
            files.append((image_path, masks_dir / f"{image_id}.png", objects if objects.is_file() else None))
        parts[name] = VOCSegmentation(files, size)
    classes = VOC_CLASSES if largest < len(VOC_CLASSES) else [f"class {i}" for i in range(max(largest + 1, 2))]
    return parts["train"], parts["test"], classes
