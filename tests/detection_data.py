"""A synthetic detection data set for the learning tests: coloured rectangles and ellipses on noise.

``make_shapes_dataset(n_images, size=64, num_classes=2, seed=0, with_masks=False) -> (images, targets)``:
``images`` a list of ``[3, size, size]`` float tensors in [0, 1]; ``targets`` one dict per image with ``boxes``
``[K, 4]`` float (x1, y1, x2, y2 in pixels, the tight box of the shape's pixels), ``labels`` ``[K]`` int64 in
1..num_classes (1 rectangle, 2 ellipse, 3 triangle, 4 cross, then repeating the shapes in another size band), and
with ``with_masks`` ``masks`` ``[K, size, size]`` uint8. 1–3 objects per image, overlapping at most a little, each
in a random saturated colour over low-contrast noise, so that colour does not give away the class: the shape does.
"""

from __future__ import annotations

import torch

SHAPES = ("rectangle", "ellipse", "triangle", "cross")


def _shape_mask(kind: str, size: int, x1: int, y1: int, x2: int, y2: int) -> torch.Tensor:
    """Boolean ``[size, size]`` mask of one shape inscribed in the box [x1, x2) × [y1, y2)."""
    ys = torch.arange(size, dtype=torch.float32)[:, None] + 0.5  # pixel centres
    xs = torch.arange(size, dtype=torch.float32)[None, :] + 0.5
    inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    if kind == "rectangle":
        return inside
    if kind == "ellipse":
        return inside & (((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0)
    if kind == "triangle":  # apex at the top centre, base at the bottom
        half_width = rx * (ys - y1) / (y2 - y1)
        return inside & ((xs - cx).abs() <= half_width)
    # cross: a horizontal and a vertical bar, each a third of the box thick
    return inside & (((xs - cx).abs() <= rx / 3) | ((ys - cy).abs() <= ry / 3))


def make_shapes_dataset(n_images: int, size: int = 64, num_classes: int = 2, seed: int = 0,
                        with_masks: bool = False) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """``n_images`` images of ``size``×``size`` with 1–3 shapes each; see the module docstring."""
    if not 1 <= num_classes <= 2 * len(SHAPES):
        raise ValueError(f"num_classes must be in [1, {2 * len(SHAPES)}], got {num_classes}")
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    images, targets = [], []
    for _ in range(n_images):
        image = 0.4 + 0.2 * torch.rand(3, size, size, generator=generator)  # low-contrast noise
        boxes, labels, masks = [], [], []
        occupied = torch.zeros(size, size, dtype=torch.bool)
        for _ in range(int(torch.randint(1, 4, (), generator=generator))):
            label = int(torch.randint(1, num_classes + 1, (), generator=generator))
            kind = SHAPES[(label - 1) % len(SHAPES)]
            small = label > len(SHAPES)  # classes beyond the four shapes: the same shapes, smaller
            for _attempt in range(20):  # place it where it overlaps the shapes already drawn at most a little
                w = int(uniform(0.15, 0.3) * size) if small else int(uniform(0.25, 0.5) * size)
                h = int(w * uniform(0.7, 1.4))
                h = max(4, min(h, size - 2))
                w = max(4, w)
                x1 = int(uniform(0, size - w))
                y1 = int(uniform(0, size - h))
                mask = _shape_mask(kind, size, x1, y1, x1 + w, y1 + h)
                if (mask & occupied).sum() <= 0.1 * mask.sum():
                    break
            mask &= ~occupied  # a later shape is drawn behind the earlier ones
            if mask.sum() < 8:
                continue
            occupied |= mask
            colour = torch.rand(3, generator=generator)
            colour = (colour - colour.min()) / (colour.max() - colour.min() + 1e-6)  # saturated
            image[:, mask] = colour[:, None]
            ys, xs = torch.nonzero(mask, as_tuple=True)
            boxes.append([float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1])
            labels.append(label)
            masks.append(mask)
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.tensor(labels, dtype=torch.int64)}
        if with_masks:
            target["masks"] = (torch.stack(masks) if masks else torch.zeros(0, size, size, dtype=torch.bool)).to(
                torch.uint8)
        images.append(image.clamp(0, 1))
        targets.append(target)
    return images, targets
