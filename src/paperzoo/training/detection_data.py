"""The data ``paperzoo train`` gives detectors and instance segmenters: generated shapes, or a COCO-format folder.

* :func:`shapes` generates, offline and in a second, coloured rectangles and ellipses (and triangles, crosses,
  smaller copies: ``num_classes`` up to 8) on low-contrast noise, each with its tight box and its pixel mask.
  Colour does not give the class away, the shape does; small detectors learn it in a minute on a CPU.
* :func:`coco` reads a folder in COCO's own layout with pycocotools (the library COCO's evaluation is written
  in)::

      PATH/annotations/instances_train.json    PATH/train/<file_name of each image>
      PATH/annotations/instances_val.json      PATH/val/<file_name of each image>

  any suffix after ``instances_`` names the image folder (COCO 2017 as downloaded: ``instances_train2017.json``
  with ``train2017/``, ``instances_val2017.json`` with ``val2017/``). Boxes are COCO's ``[x, y, width, height]``;
  masks are polygons or RLE (``segmentation``); crowd annotations (``iscrowd: 1``) are left out of training and
  ignored by the evaluation, as in COCO's own protocol.

Both give a :class:`DetectionDataset`: ``dataset[i] -> (image [3, H, W] float in [0, 1], target)`` with
``target`` torchvision's detection dict (``boxes`` ``[K, 4]`` x1, y1, x2, y2 in pixels, ``labels`` ``[K]``,
``masks`` ``[K, H, W]`` uint8 for instance segmentation, ``image_id``), and ``dataset.coco``, the ground truth as
a pycocotools ``COCO`` object for :func:`coco_evaluate`.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

SHAPES = ("rectangle", "ellipse", "triangle", "cross")
SHAPES_IMAGE_SIZE = 64  # pixels: the shapes are 10-32 pixels wide


def _pycocotools() -> Any:
    try:
        import pycocotools.coco
        import pycocotools.cocoeval
        import pycocotools.mask
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("detection training reads and scores COCO data with pycocotools: "
                          "pip install 'paperzoo[train]'") from err
    return pycocotools


# --- the generated shapes --------------------------------------------------------------------------------------

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


def make_shapes_dataset(n_images: int, size: int = SHAPES_IMAGE_SIZE, num_classes: int = 2, seed: int = 0,
                        with_masks: bool = False) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """``n_images`` images of ``size``×``size`` with 1–3 shapes each, as ``(images, targets)``: ``images`` a list of
    ``[3, size, size]`` float tensors in [0, 1]; ``targets`` one dict per image with ``boxes`` ``[K, 4]`` float (x1,
    y1, x2, y2 in pixels, the tight box of the shape's pixels), ``labels`` ``[K]`` int64 in 1..num_classes (1
    rectangle, 2 ellipse, 3 triangle, 4 cross, then the same shapes in a smaller size band), and with
    ``with_masks`` ``masks`` ``[K, size, size]`` uint8. The shapes overlap at most a little (a later one is drawn
    behind the earlier ones), each in a random saturated colour. The first ``n`` images of a seed are the same
    for any ``n_images >= n``."""
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


# --- one dataset type for both ---------------------------------------------------------------------------------

class DetectionDataset(Dataset):
    """Images with torchvision-style detection targets, and their ground truth as a pycocotools ``COCO``.

    ``categories`` are the class names in label order (label ``first_label + i`` is ``categories[i]``);
    ``category_ids`` the COCO category id of each (what the evaluation reports detections under).
    """

    def __init__(self, coco: Any, categories: Sequence[str], category_ids: Sequence[int], first_label: int,
                 with_masks: bool, images: Sequence[torch.Tensor] | None = None,
                 image_folder: Path | None = None) -> None:
        self.coco, self.categories, self.category_ids = coco, list(categories), list(category_ids)
        self.first_label, self.with_masks = first_label, with_masks
        self.image_ids = sorted(coco.getImgIds())
        self.images, self.image_folder = images, image_folder
        self.label_of = {cid: first_label + i for i, cid in enumerate(self.category_ids)}

    def __len__(self) -> int:
        return len(self.image_ids)

    def image(self, index: int) -> torch.Tensor:
        if self.images is not None:
            return self.images[index]
        from torchvision.io import ImageReadMode, decode_image

        path = self.image_folder / self.coco.imgs[self.image_ids[index]]["file_name"]
        try:
            return decode_image(str(path), mode=ImageReadMode.RGB).float() / 255.0
        except RuntimeError as err:  # torchvision's, with its C++ source line: "Out of bound read in decode_png ..."
            reason = str(err).rsplit(", ", 1)[-1]
            raise ValueError(f"{path} cannot be read as an image ({reason}); remove it or replace it") from None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image_id = self.image_ids[index]
        image = self.image(index)
        annotations = [a for a in self.coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)],
                             dtype=torch.float32).reshape(-1, 4)
        height, width = image.shape[-2:]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)  # within coco()'s tolerance of one pixel: on the image
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        target: dict[str, Any] = {
            "boxes": boxes,
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in annotations], dtype=torch.int64),
            "image_id": image_id}
        if self.with_masks:
            with warnings.catch_warnings():  # pycocotools' own decode warns under NumPy 2 (its __array__ call)
                warnings.simplefilter("ignore", DeprecationWarning)
                masks = [torch.from_numpy(self.coco.annToMask(a)) for a in annotations]
            target["masks"] = torch.stack(masks) if masks else torch.zeros(0, height, width, dtype=torch.uint8)
        return image, target


def _coco_from_dict(dataset: dict[str, Any]) -> Any:
    coco = _pycocotools().coco.COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


def shapes(split: str, num_images: int, num_classes: int = 2, seed: int = 0, with_masks: bool = False,
           first_label: int = 1) -> DetectionDataset:
    """The generated shapes as a :class:`DetectionDataset` (``split`` "train" or "test": disjoint streams of the
    generator, seeds ``2 seed`` and ``2 seed + 1``), with masks as RLE in its COCO ground truth."""
    mask_utils = _pycocotools().mask
    images, targets = make_shapes_dataset(num_images, SHAPES_IMAGE_SIZE, num_classes,
                                          seed=2 * seed + (split == "test"), with_masks=True)
    names = [f"{'small ' if i >= len(SHAPES) else ''}{SHAPES[i % len(SHAPES)]}" for i in range(num_classes)]
    dataset: dict[str, Any] = {"images": [], "annotations": [],
                               "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    for index, target in enumerate(targets):
        dataset["images"].append({"id": index + 1, "width": SHAPES_IMAGE_SIZE, "height": SHAPES_IMAGE_SIZE,
                                  "file_name": f"shape_{index + 1}.png"})
        for box, label, mask in zip(target["boxes"].tolist(), target["labels"].tolist(), target["masks"],
                                    strict=True):
            rle = mask_utils.encode(mask.numpy().astype("uint8", order="F"))
            rle["counts"] = rle["counts"].decode("ascii")  # JSON-friendly, as COCO's files hold it
            x1, y1, x2, y2 = box
            dataset["annotations"].append({
                "id": len(dataset["annotations"]) + 1, "image_id": index + 1, "category_id": label,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(mask.sum()), "iscrowd": 0, "segmentation": rle})
    return DetectionDataset(_coco_from_dict(dataset), names, list(range(1, num_classes + 1)), first_label,
                            with_masks, images=images)


# --- COCO-format folders ---------------------------------------------------------------------------------------

def find_coco_split(root: Path, split: str) -> tuple[Path, Path]:
    """``(annotation file, image folder)`` of one split (``train`` or ``val``) in a COCO-layout folder."""
    if not root.is_dir():
        raise ValueError(f"--data coco {root}: not a folder; expected {root}/annotations/instances_{{train,val}}"
                         f".json with the images in {root}/train and {root}/val")
    found = sorted((root / "annotations").glob(f"instances_{split}*.json"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(p.name for p in found)})"
        raise ValueError(f"--data coco {root}: {what} annotation file {root}/annotations/instances_{split}*.json; "
                         f"expected exactly one, with its images in {root}/{split}* (COCO's layout)")
    annotation = found[0]
    folder = root / annotation.stem.removeprefix("instances_")
    if not folder.is_dir():
        raise ValueError(f"{annotation}: its image folder {folder} does not exist")
    return annotation, folder


def read_coco(annotation: Path, folder: Path, with_masks: bool) -> Any:
    """The annotation file as a pycocotools ``COCO`` object, after checking what would otherwise fail deep in a
    loss: every image file exists, every box lies on its image (within a pixel: COCO's own boxes overshoot by
    rounding) with positive width and height, every category id is declared, and (for masks) every object has a
    segmentation. Each problem is a ``ValueError`` naming the file and the image or annotation id."""
    try:
        dataset = json.loads(annotation.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{annotation}: not a readable COCO annotation file ({err})") from None
    if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), list)
                                                for k in ("images", "annotations", "categories")):
        raise ValueError(f"{annotation}: a COCO annotation file is a JSON object with the lists 'images', "
                         "'annotations' and 'categories'")
    if not dataset["images"]:
        raise ValueError(f"{annotation}: no images")
    try:
        categories = {c["id"] for c in dataset["categories"]}
        images = {i["id"]: i for i in dataset["images"]}
        for info in dataset["images"]:
            path = folder / info["file_name"]
            if not path.is_file():
                raise ValueError(f"{annotation}: image {info['id']}'s file {path} does not exist")
        for ann in dataset["annotations"]:
            where = f"{annotation}: annotation {ann['id']} (image {ann['image_id']})"
            if ann["category_id"] not in categories:
                raise ValueError(f"{where} has category id {ann['category_id']}, which is not among the file's "
                                 f"categories ({', '.join(map(str, sorted(categories)))})")
            if ann["image_id"] not in images:
                raise ValueError(f"{where}: no image has id {ann['image_id']}")
            x, y, w, h = ann["bbox"]
            info = images[ann["image_id"]]
            if w <= 0 or h <= 0:
                raise ValueError(f"{where} has the box [x, y, w, h] = {ann['bbox']}: x2 <= x1 or y2 <= y1 "
                                 "(COCO boxes give the width and height, which must be positive)")
            if x < -1 or y < -1 or x + w > info["width"] + 1 or y + h > info["height"] + 1:
                raise ValueError(f"{where} has the box [x, y, w, h] = {ann['bbox']}, outside its "
                                 f"{info['width']}x{info['height']} image {info['file_name']}")
            if with_masks and not ann.get("iscrowd", 0) and not ann.get("segmentation"):
                raise ValueError(f"{where} has no 'segmentation' (a polygon or RLE mask), which instance "
                                 "segmentation needs")
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith(str(annotation)):
            raise
        raise ValueError(f"{annotation}: malformed COCO annotations ({type(err).__name__}: {err})") from None
    return _coco_from_dict(dataset)


def coco(root: str | Path, with_masks: bool, first_label: int = 1) -> tuple[DetectionDataset, DetectionDataset]:
    """The train and val splits of a COCO-layout folder (see the module docstring), labelled by the train
    file's categories in id order: label ``first_label + i`` is the i-th category."""
    root = Path(root)
    (train_file, train_folder), (val_file, val_folder) = find_coco_split(root, "train"), find_coco_split(root, "val")
    train, val = read_coco(train_file, train_folder, with_masks), read_coco(val_file, val_folder, with_masks)
    categories = sorted(train.cats.values(), key=lambda c: c["id"])
    if sorted(val.cats) != [c["id"] for c in categories]:
        raise ValueError(f"{val_file} declares other categories than {train_file}: "
                         f"{sorted(val.cats)} vs {[c['id'] for c in categories]}")
    names, ids = [c["name"] for c in categories], [c["id"] for c in categories]
    return (DetectionDataset(train, names, ids, first_label, with_masks, image_folder=train_folder),
            DetectionDataset(val, names, ids, first_label, with_masks, image_folder=val_folder))


# --- COCO's evaluation ------------------------------------------------------------------------------------------

def coco_results(detections: dict[int, dict[str, torch.Tensor]], dataset: DetectionDataset,
                 with_masks: bool) -> list[dict[str, Any]]:
    """Detections per image id (``boxes`` xyxy, ``scores``, ``labels``, and ``masks`` ``[K, 1, H, W]``
    probabilities) as COCO's result records (``bbox`` xywh, ``category_id``, ``score``, ``segmentation`` RLE of
    the mask thresholded at 0.5, as torchvision's reference evaluation)."""
    mask_utils = _pycocotools().mask
    category_of = {label: cid for cid, label in dataset.label_of.items()}
    results = []
    for image_id, detection in detections.items():
        boxes = detection["boxes"].float().tolist()
        rles = []
        if with_masks:
            binary = (detection["masks"][:, 0] > 0.5).to(torch.uint8).numpy()
            for mask in binary:
                rle = mask_utils.encode(mask.copy(order="F"))
                rle["counts"] = rle["counts"].decode("ascii")
                rles.append(rle)
        for k, (score, label) in enumerate(zip(detection["scores"].tolist(), detection["labels"].tolist(),
                                               strict=True)):
            if label not in category_of:  # a class the data does not have (COCO's unused ids): no record
                continue
            x1, y1, x2, y2 = boxes[k]
            record = {"image_id": image_id, "category_id": category_of[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                      "score": score}
            if with_masks:
                record["segmentation"] = rles[k]
            results.append(record)
    return results


def coco_evaluate(ground_truth: Any, results: list[dict[str, Any]], iou_type: str = "bbox") -> dict[str, float]:
    """pycocotools' COCOeval on ``results``: ``{"map": AP@[.5:.95], "map50": AP@.5}`` over the ground truth's
    images (0 for both where there is no detection at all, which COCOeval cannot load)."""
    pycocotools = _pycocotools()
    if not results:
        return {"map": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress and table
        detections = ground_truth.loadRes(results)
        evaluation = pycocotools.cocoeval.COCOeval(ground_truth, detections, iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # stats[0] AP@[.5:.95], stats[1] AP@.5 (-1 where no ground truth at all: reported as 0)
    return {"map": max(0.0, float(evaluation.stats[0])), "map50": max(0.0, float(evaluation.stats[1]))}
