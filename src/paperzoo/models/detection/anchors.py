"""Anchors: the reference boxes a detector's regression starts from (Faster R-CNN, Ren et al. 2015, §3.1.1,
https://arxiv.org/abs/1506.01497; with an FPN, one size per pyramid level, Lin et al. 2017 §4.1).

At every position of a feature map the network predicts, for each of k anchors, whether an object is there and
how the anchor must move and stretch to fit it. The k anchors are centred on the position and differ in size and
aspect ratio ("a pyramid of anchors": 3 scales × 3 ratios = 9 in Faster R-CNN; with an FPN each level gets one
size, 32² … 512², and 3 ratios, RetinaNet 3 sizes per octave × 3 ratios), which is cheaper than a pyramid of
images or of filters. An anchor of area s² and aspect ratio r = h / w has ``w = s / sqrt(r)`` and
``h = s · sqrt(r)``; the same k boxes (the "cell anchors") are shifted to every position of the map by its
stride::

    cell anchors [k, 4] (centred on 0) + shifts [h·w, 1, 4] (x·stride, y·stride) → anchors [h·w·k, 4]

Deviations: none. The cell anchors are rounded to whole pixels and placed at the top-left corner of each
stride cell (not its centre), as torchvision and Detectron do; the order of the anchors (level, then row,
column, then aspect ratio-major over sizes) is torchvision's, so that converted heads see their anchors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from paperzoo.models.detection.transform import ImageBatch


class AnchorGenerator(nn.Module):
    """Anchors for every position of every feature map.

    Args:
        sizes: per feature map, the anchor sizes s (square root of the area, in input pixels).
        aspect_ratios: per feature map, the ratios r = height / width.
    """

    def __init__(self, sizes: tuple[tuple[int, ...], ...] = ((128, 256, 512),),
                 aspect_ratios: tuple[tuple[float, ...], ...] = ((0.5, 1.0, 2.0),)) -> None:
        super().__init__()
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"sizes ({len(sizes)} maps) and aspect_ratios ({len(aspect_ratios)}) must have one "
                             "entry per feature map")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(r) for r in aspect_ratios)
        # Plain tensors, not buffers: they follow from the arguments and are not weights.
        self.cell_anchors = [self.cell_anchors_for(s, r) for s, r in zip(self.sizes, self.aspect_ratios, strict=True)]

    @staticmethod
    def cell_anchors_for(sizes: tuple[int, ...], aspect_ratios: tuple[float, ...],
                         dtype: torch.dtype = torch.float32) -> Tensor:
        """The k = len(ratios)·len(sizes) anchors of one position, centred on (0, 0): ``[k, 4]`` xyxy."""
        scales = torch.as_tensor(sizes, dtype=dtype)
        ratios = torch.as_tensor(aspect_ratios, dtype=dtype)
        h_ratios = torch.sqrt(ratios)  # h = s·sqrt(r), w = s / sqrt(r): area s², h / w = r
        w_ratios = 1 / h_ratios
        widths = (w_ratios[:, None] * scales[None, :]).view(-1)  # [k], ratio-major
        heights = (h_ratios[:, None] * scales[None, :]).view(-1)
        return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()

    def num_anchors_per_location(self) -> list[int]:
        """k for each feature map: the number of boxes a head predicts at each position."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios, strict=True)]

    def forward(self, image_batch: ImageBatch, feature_maps: list[Tensor]) -> list[Tensor]:
        """Anchors ``[A, 4]`` (xyxy, in the padded batch's pixels) for each image: every map's anchors, concatenated
        in the order of ``feature_maps``. The same for every image of the batch."""
        if len(feature_maps) != len(self.cell_anchors):
            raise ValueError(f"{len(feature_maps)} feature maps, but anchors are defined for {len(self.cell_anchors)}")
        image_h, image_w = image_batch.tensors.shape[-2:]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        per_level = []
        for feature_map, cell in zip(feature_maps, self.cell_anchors, strict=True):
            grid_h, grid_w = feature_map.shape[-2:]
            stride_h, stride_w = image_h // grid_h, image_w // grid_w
            shifts_x = torch.arange(0, grid_w, dtype=torch.int32, device=device) * stride_w
            shifts_y = torch.arange(0, grid_h, dtype=torch.int32, device=device) * stride_h
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")  # [h, w] each
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)  # [h·w, 4]
            cell = cell.to(dtype=dtype, device=device)
            per_level.append((shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4))  # [h·w·k, 4]
        anchors = torch.cat(per_level)
        return [anchors for _ in image_batch.image_sizes]
