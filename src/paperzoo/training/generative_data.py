"""A folder of images for the generative models: every image under the folder (any layout, no classes), read
with Pillow, converted to the model's channels (grey or RGB) and resized to its square size."""

from __future__ import annotations

from pathlib import Path

import torch

from paperzoo.training.data import IMAGE_SUFFIXES


def image_files(root: str | Path, size: int, channels: int, test_fraction: float = 0.2,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, test)`` image tensors ``(N, channels, size, size)`` in [0, 1], split at random by ``seed``.

    A folder that does not exist, holds no images or fewer than 4, or holds a file with an image suffix that
    Pillow cannot read is a ``ValueError`` naming it."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 4:
        raise ValueError(f"dataset folder {root} holds {len(paths)} images ({', '.join(IMAGE_SUFFIXES)}); "
                         "a generative model needs at least 4 (some are held out to score its samples)")
    images = []
    for path in paths:
        try:
            with Image.open(path) as file:
                image = file.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read the image {path}: {err}") from None
        images.append(pil_to_tensor(image).float() / 255)
    stacked = torch.stack(images)
    order = torch.randperm(len(stacked), generator=torch.Generator().manual_seed(seed))
    cut = max(2, round(test_fraction * len(stacked)))
    return stacked[order[cut:]], stacked[order[:cut]]
