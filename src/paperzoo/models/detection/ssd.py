r"""SSD: the Single Shot MultiBox Detector.

Paper: "SSD: Single Shot MultiBox Detector", Wei Liu, Dragomir Anguelov, Dumitru Erhan, Christian Szegedy,
Scott Reed, Cheng-Yang Fu, Alexander C. Berg, ECCV 2016 (arXiv 2015). https://arxiv.org/abs/1512.02325

Faster R-CNN detects in two stages: propose regions, then resample features for each and classify them. SSD
drops the proposals and the resampling: one convolutional network predicts, in a single pass, a class score
and a box offset for each of a fixed set of *default boxes* tiled over several feature maps. Its ideas:

* Multi-scale feature maps for detection (§2.1). Convolutional layers added after a truncated VGG16 shrink the
  map step by step (38², 19², 10², 5², 3², 1² at 300×300); each of the six maps predicts objects of its own
  scale, fine maps small objects and coarse maps large ones, with no image pyramid.
* Convolutional predictors (§2.1). On a map of p channels, a small 3×3×p kernel predicts, for each of the k
  default boxes at each location, c class scores and 4 offsets: (c + 4)·k filters per map.
* Default boxes and aspect ratios (§2.1, §2.2). Map k of m carries boxes of scale (eq. 4)
  $s_k = s_{min} + \frac{s_{max} - s_{min}}{m - 1}(k - 1)$ relative to the image, with aspect ratios
  $a_r \in \{1, 2, 3, \frac{1}{2}, \frac{1}{3}\}$ ($w = s_k \sqrt{a_r}$, $h = s_k / \sqrt{a_r}$), plus for
  $a_r = 1$ a box of scale $s'_k = \sqrt{s_k s_{k+1}}$, centred on each cell
  $(\frac{i + 0.5}{|f_k|}, \frac{j + 0.5}{|f_k|})$. Maps whose cells see regions near a box's size learn it; the set
  covers scales and shapes densely (8732 boxes for SSD300).
* Matching (§2.3). Each ground-truth box is matched to the default box of best Jaccard overlap (IoU), and then
  every default box to any ground truth with IoU above 0.5 (here, as torchvision, IoU ≥ 0.5): several default
  boxes may predict one object, which is easier to learn than picking the single best.
* The MultiBox objective (§2.3, eq. 1–3): $L = (L_{conf} + \alpha L_{loc}) / N$ over the N matched boxes (0 if
  N = 0); $L_{loc}$ is a smooth L1 loss on the offsets of matched boxes, encoded relative to their default box
  as in Faster R-CNN; $L_{conf}$ a softmax cross-entropy over the c classes, background included.
* Hard negative mining (§2.3). Most default boxes are background. Instead of all of them, the negatives of
  highest confidence loss are kept, at most 3 for each positive: faster, more stable training.
* The base network (§3): VGG16 with pool5 changed from 2×2 stride 2 to 3×3 stride 1, and fc6 and fc7 turned
  into convolutions (parameters subsampled from the fully-connected layers), fc6 an atrous (dilated, 6)
  3×3 convolution so that it keeps its receptive field. conv4_3's features have a different scale from the
  deeper ones, so they are L2-normalised per location and rescaled by a learned per-channel scale
  (initialised to 20, following ParseNet).
* Inference (§3): per class, keep the boxes scoring above a threshold (0.01), NMS with IoU 0.45 per class,
  and the top 200 detections per image.

Data flow of SSD300 (canonical) at 300×300 (``k`` default boxes per location, ``c`` = 91 classes)::

    images (any sizes) ─ resize to 300×300, subtract VGG's mean ─► [N, 3, 300, 300]
      VGG16 conv1_1 … conv4_3 (pools with Caffe's rounding up: 300→150→75→38) → conv4_3 [N, 512, 38, 38]
          └─ L2Norm (learned scale) ───────────────────────────────────────────► map 1  512×38×38, k = 4
      pool4, conv5_1 … conv5_3, pool5 3×3 s1, fc6 3×3 dilation 6, fc7 1×1 → conv7 [N, 1024, 19, 19]  map 2, k = 6
      conv8_1 1×1 256, conv8_2 3×3 s2 512                                        map 3  512×10×10, k = 6
      conv9_1 1×1 128, conv9_2 3×3 s2 256                                        map 4  256×5×5,   k = 6
      conv10_1 1×1 128, conv10_2 3×3 valid 256                                   map 5  256×3×3,   k = 4
      conv11_1 1×1 128, conv11_2 3×3 valid 256                                   map 6  256×1×1,   k = 4
    each map ─ 3×3 conv → c·k class scores, 3×3 conv → 4·k offsets; all maps → [N, 8732, c] and [N, 8732, 4]
    training: match default boxes to ground truth → smooth L1 + softmax cross-entropy with hard negatives
    inference: softmax, decode offsets onto default boxes, per class threshold + NMS, top 200, back to input pixels

SSD512 feeds 512×512 images through the same network plus one more extra layer (conv12_1 1×1 128, conv12_2
4×4 256), so that its seven maps are the paper's 64², 32², 16², 8², 4², 2², 1² (conv10_2 and conv11_2 then halve
the map, 3×3 with stride 2 and padding 1; conv12_2 is padded by 1), with k = 4, 6, 6, 6, 6, 4, 4 (24,564 default
boxes, the paper's Table 7).

Parameters of SSD512 (91 classes), counted from the paper's layers (weights + biases):
VGG16 conv1_1 … conv5_3: 14,714,688; fc6 3×3 512→1024: 4,719,616; fc7 1×1 1024→1024: 1,049,600; L2Norm scale: 512;
conv8: 262,400 + 1,180,160; conv9: 65,664 + 295,168; conv10, conv11: 32,896 + 295,168 each; conv12 (4×4):
32,896 + 524,544; predictors (3×3, (91 + 4)·k filters) on maps of 512, 1024, 512, 256, 256, 256, 256 channels
with k = 4, 6, 6, 6, 6, 4, 4: 1,751,420 + 5,253,690 + 2,627,130 + 1,313,850 + 1,313,850 + 875,900 + 875,900 =
14,011,740. Total 37,513,116 (``ssd512_vgg16``'s card; tests/test_ssd.py recomputes it from these layer shapes).
The same sum over SSD300's layers (no conv12; 6 maps, k = 4, 6, 6, 6, 4, 4) gives torchvision's 35,641,826.

Deviations from the paper, all torchvision's (SSD300 is equal to ``torchvision.models.detection.ssd300_vgg16``,
whose weights convert) unless said otherwise:

* The default-box scales are those of the paper's COCO models (§3.4): s_min = 0.15, s_max = 0.9, conv4_3 alone
  at 0.07. The step (s_max − s_min)/(m − 1) is rounded down to a whole percent, as the authors' released code does
  and torchvision copies: 0.15, 0.33, 0.51, 0.69, 0.87 for SSD300, where eq. 4 gives 0.15, 0.3375, … (SSD512's
  step, 0.15, is exact). $s'_k$ of the last map uses $s_{m+1} = s_{max} + \text{step}$ (1.05), which the paper leaves
  open.
* SSD300's box centres use the released code's steps (8, 16, 32, 64, 100, 300 pixels: (i + 0.5)·step / 300)
  rather than (i + 0.5)/|f_k| (38 cells × 8 pixels = 304 ≠ 300), and its box widths and heights are clipped to
  the image (at most 1), as torchvision; SSD512's steps 8 … 512 equal the paper's centres, and it follows the
  paper and the released SSD512 in not clipping (``clip_default_boxes=False``).
* The images are resized to exactly 300×300 (512×512) by bilinear interpolation, and normalised with the Caffe
  VGG16's mean (0.48235, 0.45882, 0.40784) and a standard deviation of 1/255 (pixel values 0…255, as Caffe).
  No data augmentation is built in: it belongs to the training pipeline.
* fc6 and fc7 are torchvision's subsampled shapes (fc6: 1024 filters of 3×3×512, dilation 6; fc7: 1×1 1024),
  as the paper's §3; without pretrained weights they are initialised by Xavier (uniform), as the extra layers
  and the predictors, and VGG's convolutions by He (fan-out) as torchvision's VGG16. pool1 … pool4 round up
  (Caffe's pooling; torchvision patches only pool3, which is the only odd size at 300 and 512, so the maps agree).
* num_classes = 91: torchvision's COCO label space (category ids 1 … 90 with gaps, 0 the background); the
  paper's COCO models have 81 outputs. Labels of targets lie in [1, num_classes).
* Classification loss: the paper's negatives for hard mining are drawn only from the unmatched boxes. torchvision
  ranks all boxes with positives at −∞, which also admits positives when an image has fewer than 3× its
  positives in negatives (never at 8732 boxes); here they are excluded, so the losses are equal whenever that
  cannot happen. An image without objects contributes no confidence loss (3 × 0 negatives), as torchvision.
* Before NMS each class keeps at most its 400 best boxes (``candidates_per_class``), the released code's
  ``top_k``; the box coding's weights (10, 10, 5, 5) are the released code's "variances" (0.1, 0.2).
* SSD512 (reference: the paper) has the layers of SSD300 plus conv12; its extra layers conv10_2 and conv11_2
  stride 2 with padding 1 and conv12_2 is 4×4 with padding 1 (the sizes 4, 2, 1 of the paper's SSD512);
  conv4_3, conv11_2 and conv12_2 carry 4 default boxes, the others 6 (the released SSD512; for SSD300 the paper
  gives 4 on conv4_3, conv10_2, conv11_2: the first map and the last two); s_min = 0.15, 0.07 on conv4_3.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from paperzoo.layers import ConvNormAct, check_detection_targets, check_image_list
from paperzoo.models.detection.boxes import BoxCoder, Matcher
from paperzoo.models.detection.transform import DetectionTransform, ImageBatch
from paperzoo.registry import InputSpec, ModelCard, Paper, create_model, register

__all__ = ["SSD", "DefaultBoxes", "ExtraLayer", "L2Norm", "MultiBoxHead", "VGGBase", "default_box_scales",
           "hard_negative_mining", "match_default_boxes"]

# The Caffe VGG16's mean pixel (B, G, R = 104, 117, 123, here RGB in [0, 1]) and 1/255: the network sees 0…255.
VGG_MEAN = (0.48235, 0.45882, 0.40784)
VGG_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)


class ExtraLayer(NamedTuple):
    """One extra feature layer (§2.1, Fig. 2): a 1×1 convolution to ``mid_channels``, then a ``kernel_size``
    convolution to ``out_channels`` with ``stride`` and ``padding``."""

    mid_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: int = 2
    padding: int = 1


# conv8 … conv11 of SSD300 (Fig. 2): two halvings, then two valid 3×3 convolutions (5 → 3 → 1).
SSD300_EXTRA_LAYERS = (ExtraLayer(256, 512), ExtraLayer(128, 256), ExtraLayer(128, 256, 3, 1, 0),
                       ExtraLayer(128, 256, 3, 1, 0))
# conv8 … conv12 of SSD512: four halvings (32 → 16 → 8 → 4 → 2), then a 4×4 convolution padded by 1 (2 → 1).
SSD512_EXTRA_LAYERS = (ExtraLayer(256, 512), ExtraLayer(128, 256), ExtraLayer(128, 256), ExtraLayer(128, 256),
                       ExtraLayer(128, 256, 4, 1, 1))


# --- the network: VGG16 base, extra feature layers, convolutional predictors ----------------------------------------

class L2Norm(nn.Module):
    """L2 normalisation across channels at every location, times a learned per-channel scale (ParseNet; §3.1:
    conv4_3's features are larger than the deeper layers', so they are normalised before prediction)."""

    def __init__(self, channels: int, initial_scale: float = 20.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), initial_scale))

    def forward(self, x: Tensor) -> Tensor:
        # x̂ = x / ‖x‖₂ over the channels, y = γ x̂ (the epsilon keeps an all-zero location at zero)
        norm = x.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)  # [N, 1, H, W]
        return self.scale.view(1, -1, 1, 1) * (x / norm)


class VGGBase(nn.Module):
    """The base network (§3): the registry's VGG16 truncated and converted for detection, and the extra feature
    layers (§2.1) after it. Returns the feature maps that the predictors read, finest first.

    The VGG16 comes from ``create_model("vgg16", features_only=True, ceil_mode=True)``; its blocks are
    re-assembled here because SSD needs what the classifier's feature API does not give: conv4_3 *before*
    pool4 (the first prediction map), and pool5 of 3×3 with stride 1 in place of 2×2 with stride 2.

    Args:
        vgg_widths: channels of VGG16's five blocks (64, 128, 256, 512, 512).
        fc_width: channels of fc6 and fc7 (1024: the paper's subsampled fully-connected layers).
        fc6_dilation: fc6's dilation (6, the "atrous" algorithm).
        extra_layers: the extra feature layers after fc7, one :class:`ExtraLayer` each (conv8, conv9, …).
        l2norm_scale: the initial scale of conv4_3's L2 normalisation (20).
    """

    def __init__(self, vgg_widths: Sequence[int] = (64, 128, 256, 512, 512), fc_width: int = 1024,
                 fc6_dilation: int = 6, extra_layers: Sequence[ExtraLayer] = SSD300_EXTRA_LAYERS,
                 l2norm_scale: float = 20.0) -> None:
        super().__init__()
        vgg = create_model("vgg16", features_only=True, out_indices=(4,), ceil_mode=True,
                           block_widths=tuple(vgg_widths))
        blocks = vgg.features
        # conv1_1 … conv4_3 (stride 8: 300 → 38 with pools rounding up)
        self.to_conv4_3 = nn.Sequential(OrderedDict(
            block1=blocks.block1, block2=blocks.block2, block3=blocks.block3,
            conv4_1=blocks.block4.conv4_1, conv4_2=blocks.block4.conv4_2, conv4_3=blocks.block4.conv4_3))
        self.conv4_3_norm = L2Norm(vgg_widths[3], l2norm_scale)
        # pool4, conv5_x, then pool5 at stride 1 so that fc6/fc7 ("conv6", "conv7") keep conv5's 19×19 grid
        self.to_fc7 = nn.Sequential(OrderedDict(
            pool4=blocks.block4.pool4, conv5_1=blocks.block5.conv5_1, conv5_2=blocks.block5.conv5_2,
            conv5_3=blocks.block5.conv5_3,
            pool5=nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            fc6=ConvNormAct(vgg_widths[4], fc_width, kernel_size=3, dilation=fc6_dilation, norm_layer=None),
            fc7=ConvNormAct(fc_width, fc_width, kernel_size=1, norm_layer=None)))
        extras: OrderedDict[str, nn.Module] = OrderedDict()
        channels = fc_width
        for index, layer in enumerate(extra_layers, start=8):  # the paper numbers them conv8_2, conv9_2, …
            extras[f"conv{index}"] = nn.Sequential(OrderedDict([
                (f"conv{index}_1", ConvNormAct(channels, layer.mid_channels, kernel_size=1, norm_layer=None)),
                (f"conv{index}_2", ConvNormAct(layer.mid_channels, layer.out_channels, layer.kernel_size,
                                               stride=layer.stride, padding=layer.padding, norm_layer=None)),
            ]))
            channels = layer.out_channels
        self.extras = nn.ModuleDict(extras)
        self.out_channels = [vgg_widths[3], fc_width] + [layer.out_channels for layer in extra_layers]
        # VGG16's convolutions keep the registry's He initialisation; the layers SSD adds get Xavier's.
        for module in [self.to_fc7.fc6, self.to_fc7.fc7, self.extras]:
            _xavier_init(module)

    def forward(self, images: Tensor) -> list[Tensor]:
        """``[N, 3, H, W]`` → the prediction maps ``[N, C_k, H_k, W_k]``, finest first."""
        x = self.to_conv4_3(images)
        maps = [self.conv4_3_norm(x)]
        x = self.to_fc7(x)
        maps.append(x)
        for layer in self.extras.values():
            x = layer(x)
            maps.append(x)
        return maps


def _xavier_init(module: nn.Module) -> None:
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)


class MultiBoxHead(nn.Module):
    """The convolutional predictors (§2.1): on each map, one 3×3 convolution gives every default box's c class
    scores ("confidences") and another its 4 offsets ("localisation").

    Args:
        in_channels: channels of each prediction map.
        boxes_per_location: k, the default boxes at each location of each map.
        num_classes: c, the background included.
    """

    def __init__(self, in_channels: Sequence[int], boxes_per_location: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.confidence = nn.ModuleList(nn.Conv2d(c, k * num_classes, kernel_size=3, padding=1)
                                        for c, k in zip(in_channels, boxes_per_location, strict=True))
        self.location = nn.ModuleList(nn.Conv2d(c, k * 4, kernel_size=3, padding=1)
                                      for c, k in zip(in_channels, boxes_per_location, strict=True))
        _xavier_init(self)

    @staticmethod
    def _per_default_box(predictions: Tensor, columns: int) -> Tensor:
        n, _, h, w = predictions.shape
        # [N, k·columns, H, W] → [N, k, columns, H, W] → [N, H, W, k, columns] → [N, H·W·k, columns]: the order of
        # the default boxes (row, column, then box)
        predictions = predictions.view(n, -1, columns, h, w).permute(0, 3, 4, 1, 2)
        return predictions.reshape(n, -1, columns)

    def forward(self, maps: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Prediction maps → class logits ``[N, D, c]`` and box offsets ``[N, D, 4]`` for all D default boxes."""
        logits = [self._per_default_box(predict(x), self.num_classes)
                  for predict, x in zip(self.confidence, maps, strict=True)]
        offsets = [self._per_default_box(predict(x), 4) for predict, x in zip(self.location, maps, strict=True)]
        return torch.cat(logits, dim=1), torch.cat(offsets, dim=1)


# --- default boxes, matching, hard negative mining ----------------------------------------------------------------

def default_box_scales(num_maps: int, min_scale: float = 0.15, max_scale: float = 0.9,
                       first_scale: float | None = 0.07, whole_percent_step: bool = True) -> list[float]:
    r"""The scales $s_1 \dots s_m$ of the default boxes on $m$ = ``num_maps`` maps, and $s_{m+1}$ for the last
    $s'_m$.

    Eq. 4: $s_k = s_{min} + \frac{s_{max} - s_{min}}{m - 1}(k - 1)$. With ``first_scale`` (§3.1, §3.4: conv4_3 gets a
    smaller scale of its own, 0.1 on VOC, 0.07 on COCO) the formula spans the other m − 1 maps.
    ``whole_percent_step`` rounds the step down to a whole percent, as the authors' released code (and
    torchvision's SSD300 values) do. $s_{m+1} = s_m + \text{step}$.
    """
    spanned = num_maps - 1 if first_scale is not None else num_maps
    if spanned < 2:
        raise ValueError(f"eq. 4 needs at least two maps between s_min and s_max, got {spanned}")
    if whole_percent_step:  # in integer percent: 0.15 + 18% is 0.33 exactly, as the released code's values
        low, high = round(min_scale * 100), round(max_scale * 100)
        step = (high - low) // (spanned - 1)
        scales = [(low + k * step) / 100 for k in range(spanned + 1)]
    else:
        step = (max_scale - min_scale) / (spanned - 1)
        scales = [min_scale + k * step for k in range(spanned + 1)]
    return ([first_scale] if first_scale is not None else []) + scales


class DefaultBoxes(nn.Module):
    r"""The default boxes of every map (§2.2), in input pixels, xyxy.

    At each location (i, j) of map k (|f_k|² cells) the boxes are centred on ((j + 0.5)/|f_k|, (i + 0.5)/|f_k|)
    (or, with ``steps``, on ((j + 0.5)·step_k, (i + 0.5)·step_k) pixels) and have, relative to the image, the
    sizes: $s_k \times s_k$ ($a_r = 1$), $s'_k \times s'_k$ with $s'_k = \sqrt{s_k s_{k+1}}$, and for each
    ``aspect_ratios[k]`` $a \in \{2, 3\}$: $w = s_k\sqrt{a}$, $h = s_k/\sqrt{a}$ and its transpose ($a_r = 1/a$).
    Order: map, row, column, then box as listed.

    Args:
        aspect_ratios: per map, the a_r > 1 used (each also as 1/a_r): (2,) gives 4 boxes, (2, 3) gives 6.
        scales: $s_1 \dots s_{m+1}$ (:func:`default_box_scales`).
        steps: per map, the distance between centres in pixels; ``None``: the image divided into |f_k| cells.
        clip: clip each box's width and height to the image (at most 1), as torchvision.
    """

    def __init__(self, aspect_ratios: Sequence[Sequence[float]], scales: Sequence[float],
                 steps: Sequence[int] | None = None, clip: bool = True) -> None:
        super().__init__()
        if len(scales) != len(aspect_ratios) + 1:
            raise ValueError(f"{len(aspect_ratios)} maps need {len(aspect_ratios) + 1} scales (s_1 … s_{{m+1}}), "
                             f"got {len(scales)}")
        if steps is not None and len(steps) != len(aspect_ratios):
            raise ValueError(f"{len(aspect_ratios)} maps need as many steps, got {len(steps)}")
        self.aspect_ratios = [tuple(ratios) for ratios in aspect_ratios]
        self.scales = list(scales)
        self.steps = list(steps) if steps is not None else None
        self.clip = clip

    def num_boxes_per_location(self) -> list[int]:
        """k for each map: s_k, s'_k, and two boxes per aspect ratio a_r > 1."""
        return [2 + 2 * len(ratios) for ratios in self.aspect_ratios]

    def box_sizes(self, k: int) -> Tensor:
        """``[k_boxes, 2]``: the (width, height) of map ``k``'s boxes, relative to the image."""
        s_k = self.scales[k]
        s_prime = math.sqrt(self.scales[k] * self.scales[k + 1])  # the extra box of a_r = 1
        sizes = [[s_k, s_k], [s_prime, s_prime]]
        for ratio in self.aspect_ratios[k]:
            wide, tall = s_k * math.sqrt(ratio), s_k / math.sqrt(ratio)  # w = s_k √a_r, h = s_k / √a_r
            sizes += [[wide, tall], [tall, wide]]  # a_r, and 1/a_r
        sizes = torch.tensor(sizes, dtype=torch.float32)
        return sizes.clamp(0, 1) if self.clip else sizes

    def forward(self, image_batch: ImageBatch, feature_maps: list[Tensor]) -> list[Tensor]:
        """The default boxes ``[D, 4]`` (xyxy, pixels of the batch's images), once per image."""
        height, width = image_batch.tensors.shape[-2:]
        device = feature_maps[0].device
        boxes = []
        for k, feature_map in enumerate(feature_maps):
            rows, columns = feature_map.shape[-2:]
            # centres relative to the image: (j + 0.5) / |f_k|, or (j + 0.5) · step / W with the released steps
            cells_x, cells_y = ((width / self.steps[k], height / self.steps[k]) if self.steps is not None
                                else (columns, rows))
            centre_x = (torch.arange(columns, device=device) + 0.5) / cells_x
            centre_y = (torch.arange(rows, device=device) + 0.5) / cells_y
            centre_y, centre_x = torch.meshgrid(centre_y, centre_x, indexing="ij")  # [rows, columns]
            sizes = self.box_sizes(k).to(device)  # [b, 2]
            centres = torch.stack((centre_x, centre_y), dim=-1).reshape(-1, 1, 2)  # [rows·columns, 1, 2]
            sizes = sizes.expand(centres.shape[0], -1, -1)  # [rows·columns, b, 2]
            centres = centres.expand_as(sizes)
            scale = torch.tensor([width, height], dtype=torch.float32, device=device)
            # (c_x, c_y, w, h) → (x1, y1, x2, y2) in pixels
            corners = torch.cat(((centres - 0.5 * sizes) * scale, (centres + 0.5 * sizes) * scale), dim=-1)
            boxes.append(corners.reshape(-1, 4))
        default_boxes = torch.cat(boxes, dim=0)
        return [default_boxes for _ in image_batch.image_sizes]

    def extra_repr(self) -> str:
        return (f"aspect_ratios={self.aspect_ratios}, scales={self.scales}, steps={self.steps}, "
                f"clip={self.clip}")


def match_default_boxes(ground_truth: Tensor, default_boxes: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """The matching strategy (§2.3): ``[G, 4]`` ground truths, ``[D, 4]`` default boxes → ``[D]``, the index of
    each default box's ground truth, or -1 (background).

    First every default box takes the ground truth it overlaps most if that Jaccard overlap (IoU) reaches
    ``iou_threshold``; then each ground truth claims its best default box whatever the overlap, so that every
    object is learned by at least one box."""
    iou = box_iou(ground_truth, default_boxes)  # [G, D]
    matches = Matcher(iou_threshold, iou_threshold)(iou)  # below the threshold: Matcher.BELOW_LOW_THRESHOLD (-1)
    best_default_box = iou.max(dim=1).indices  # [G]
    matches[best_default_box] = torch.arange(len(ground_truth), device=matches.device)
    return matches


def hard_negative_mining(confidence_loss: Tensor, positive: Tensor, neg_pos_ratio: float = 3.0) -> Tensor:
    """Hard negative mining (§2.3): per image, the negatives (unmatched default boxes) of highest confidence loss,
    at most ``neg_pos_ratio`` per positive. ``[N, D]`` losses and positive mask → ``[N, D]`` negative mask."""
    num_negative = neg_pos_ratio * positive.sum(dim=1, keepdim=True)  # [N, 1]
    loss = confidence_loss.detach().clone()
    loss[positive] = -math.inf  # positives rank last
    order = loss.sort(dim=1, descending=True).indices
    rank = order.sort(dim=1).indices  # each box's place in the ranking by loss, 0 the hardest
    return (rank < num_negative) & ~positive


# --- the detector ---------------------------------------------------------------------------------------------------

class SSD(nn.Module):
    """SSD: a VGG16 base with extra feature layers, convolutional predictors on each map, default boxes, the
    MultiBox loss with hard negative mining, and per-class NMS. torchvision's detection interface:
    ``model(images, targets)`` in training returns ``{"bbox_regression", "classification"}``; in evaluation
    ``model(images)`` returns per image ``boxes`` (xyxy, input pixels), ``labels``, ``scores``.

    Args:
        num_classes: c, including the background (class 0).
        image_size: the side every image is resized to (300, 512).
        vgg_widths: channels of VGG16's five blocks.
        fc_width: channels of fc6 and fc7.
        fc6_dilation: fc6's dilation.
        extra_layers: the extra feature layers after fc7.
        aspect_ratios: per prediction map, the aspect ratios a_r > 1 of its default boxes.
        min_scale, max_scale, first_scale: s_min, s_max and conv4_3's own scale (``None``: eq. 4 on every map).
        whole_percent_step: round eq. 4's step down to a whole percent (the released code; torchvision).
        steps: per map, the pixels between default-box centres (``None``: the paper's (i + 0.5)/|f_k|).
        clip_default_boxes: clip default boxes' width and height to the image.
        l2norm_scale: the initial scale of conv4_3's L2 normalisation.
        iou_threshold: the IoU from which a default box matches a ground truth (0.5).
        neg_pos_ratio: negatives kept per positive by hard negative mining (3).
        score_threshold, nms_threshold, candidates_per_class, detections_per_image: inference (0.01, 0.45, 400,
            200).
        image_mean, image_std: the input normalisation.
    """

    min_input_size = 1  # every image is resized to image_size × image_size first
    model_name = "ssd"

    def __init__(
        self,
        num_classes: int = 91,
        image_size: int = 300,
        vgg_widths: Sequence[int] = (64, 128, 256, 512, 512),
        fc_width: int = 1024,
        fc6_dilation: int = 6,
        extra_layers: Sequence[ExtraLayer] = SSD300_EXTRA_LAYERS,
        aspect_ratios: Sequence[Sequence[float]] = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
        min_scale: float = 0.15,
        max_scale: float = 0.9,
        first_scale: float | None = 0.07,
        whole_percent_step: bool = True,
        steps: Sequence[int] | None = (8, 16, 32, 64, 100, 300),
        clip_default_boxes: bool = True,
        l2norm_scale: float = 20.0,
        iou_threshold: float = 0.5,
        neg_pos_ratio: float = 3.0,
        score_threshold: float = 0.01,
        nms_threshold: float = 0.45,
        candidates_per_class: int = 400,
        detections_per_image: int = 200,
        image_mean: Sequence[float] = VGG_MEAN,
        image_std: Sequence[float] = VGG_STD,
    ) -> None:
        super().__init__()
        num_maps = 2 + len(extra_layers)  # conv4_3, conv7 and the extra layers
        if len(aspect_ratios) != num_maps:
            raise ValueError(f"{num_maps} prediction maps (conv4_3, fc7 and {len(extra_layers)} extra layers) need "
                             f"one aspect-ratio tuple each, got {len(aspect_ratios)}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.candidates_per_class = candidates_per_class
        self.detections_per_image = detections_per_image

        self.transform = DetectionTransform(image_size, image_size, image_mean, image_std, size_divisible=1,
                                            fixed_size=(image_size, image_size))
        self.backbone = VGGBase(vgg_widths, fc_width, fc6_dilation, extra_layers, l2norm_scale)
        self.default_boxes = DefaultBoxes(
            aspect_ratios, default_box_scales(num_maps, min_scale, max_scale, first_scale, whole_percent_step),
            steps, clip_default_boxes)
        self.head = MultiBoxHead(self.backbone.out_channels, self.default_boxes.num_boxes_per_location(),
                                 num_classes)
        # The offsets' "variances" 0.1 (centre) and 0.2 (size) of the released code: weights 10, 10, 5, 5.
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training (with ``targets``: ``boxes`` ``[K, 4]`` xyxy pixels, ``labels`` ``[K]`` in [1, num_classes)):
        the losses. Evaluation: one dict of ``boxes``, ``labels``, ``scores`` per image."""
        check_image_list(images, model=self, min_size=self.min_input_size)
        if self.training:
            check_detection_targets(targets, images, name=self.model_name, num_classes=self.num_classes)
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch, targets = self.transform(images, targets if self.training else None)
        maps = self.backbone(batch.tensors)
        class_logits, box_offsets = self.head(maps)  # [N, D, c], [N, D, 4]
        default_boxes = self.default_boxes(batch, maps)
        if self.training:
            return self.multibox_loss(class_logits, box_offsets, default_boxes, targets)
        detections = self.detect(class_logits, box_offsets, default_boxes, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    def multibox_loss(self, class_logits: Tensor, box_offsets: Tensor, default_boxes: list[Tensor],
                      targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Eq. 1: L = (L_conf + α L_loc) / N with α = 1, N the matched default boxes of the batch (the loss is 0
        if N = 0), returned as its two terms."""
        localisation, class_targets = [], []
        num_matched = 0
        for offsets, boxes, target in zip(box_offsets, default_boxes, targets, strict=True):
            if len(target["boxes"]) == 0:  # no object: every default box is background
                matches = torch.full((len(boxes),), -1, dtype=torch.int64, device=boxes.device)
            else:
                matches = match_default_boxes(target["boxes"], boxes, self.iou_threshold)
            matched = torch.where(matches >= 0)[0]
            ground_truth = matches[matched]
            num_matched += matched.numel()
            # Eq. 2: smooth L1 between the predicted offsets and the ground truth encoded on its default box
            # (ĝ^cx = (g^cx − d^cx)/d^w, ĝ^w = log(g^w/d^w), …, divided by the variances)
            encoded = self.box_coder.encode_single(target["boxes"][ground_truth], boxes[matched])
            localisation.append(F.smooth_l1_loss(offsets[matched], encoded, reduction="sum"))
            labels = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
            labels[matched] = target["labels"][ground_truth]
            class_targets.append(labels)
        labels = torch.stack(class_targets)  # [N, D], 0 = background
        # Eq. 3: softmax cross-entropy of every default box, positives and the hard negatives only
        confidence = F.cross_entropy(class_logits.reshape(-1, self.num_classes), labels.reshape(-1),
                                     reduction="none").view_as(labels)
        positive = labels > 0
        negative = hard_negative_mining(confidence, positive, self.neg_pos_ratio)
        normaliser = max(1, num_matched)
        return {"bbox_regression": torch.stack(localisation).sum() / normaliser,
                "classification": (confidence[positive].sum() + confidence[negative].sum()) / normaliser}

    def detect(self, class_logits: Tensor, box_offsets: Tensor, default_boxes: list[Tensor],
               image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Inference: class probabilities by softmax, offsets decoded onto the default boxes and clipped to the
        image, then per class the boxes above ``score_threshold`` (at most ``candidates_per_class``), NMS per
        class and the ``detections_per_image`` best."""
        probabilities = F.softmax(class_logits, dim=-1)  # [N, D, c]
        detections = []
        for offsets, scores, boxes, size in zip(box_offsets, probabilities, default_boxes, image_sizes, strict=True):
            boxes = clip_boxes_to_image(self.box_coder.decode_single(offsets, boxes), size)  # [D, 4]
            kept_boxes, kept_scores, kept_labels = [], [], []
            for label in range(1, self.num_classes):  # 0 is the background
                score = scores[:, label]
                above = score > self.score_threshold
                score, candidates = score[above], boxes[above]
                score, best = score.topk(min(self.candidates_per_class, score.numel()))
                kept_boxes.append(candidates[best])
                kept_scores.append(score)
                kept_labels.append(torch.full_like(score, label, dtype=torch.int64))
            all_boxes, all_scores, all_labels = torch.cat(kept_boxes), torch.cat(kept_scores), torch.cat(kept_labels)
            keep = batched_nms(all_boxes, all_scores, all_labels, self.nms_threshold)[: self.detections_per_image]
            detections.append({"boxes": all_boxes[keep], "scores": all_scores[keep], "labels": all_labels[keep]})
        return detections


# --- variants -------------------------------------------------------------------------------------------------------

_PAPER = Paper(
    title="SSD: Single Shot MultiBox Detector",
    authors="Wei Liu, Dragomir Anguelov, Dumitru Erhan, Christian Szegedy, Scott Reed, Cheng-Yang Fu, "
            "Alexander C. Berg",
    year=2016,
    url="https://arxiv.org/abs/1512.02325",
)
_INNOVATIONS = (
    "one network, one pass: class scores and box offsets for a fixed set of default boxes, no proposals",
    "multi-scale feature maps: each extra layer's map predicts objects of its own scale",
    "default boxes of several scales (s_k) and aspect ratios at every location, matched to objects by IoU",
    "MultiBox loss: smooth L1 localisation + softmax confidence, hard negatives at most 3:1",
    "VGG16 base with atrous fc6/fc7 as convolutions and L2-normalised conv4_3",
)


def _card(name: str, size: int, params: int, params_source: str, reference: str, gmacs: float,
          canonical: bool = False, notes: str = "") -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"SSD{size} (VGG16)",
        task="object-detection",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image-list", shape=(3, size, size), min_size=SSD.min_input_size),
        params=params,
        params_source=params_source,
        reference=reference,
        gmacs=gmacs,
        canonical=canonical,
        notes=notes,
    )


@register(_card("ssd300_vgg16", 300, params=35_641_826,
                params_source="torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None), "
                              "counted (91 classes)",
                reference="torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None)",
                gmacs=34.858, canonical=True))
def ssd300_vgg16(**kwargs: Any) -> SSD:
    """SSD300: six prediction maps (38² … 1²), 8732 default boxes, torchvision's COCO configuration."""
    return SSD(**kwargs)


@register(_card("ssd512_vgg16", 512, params=37_513_116,
                params_source="derived from the paper's layers (SSD300's plus conv12, 7 maps with 4, 6, 6, 6, 6, 4, 4 "
                              "boxes, 91 classes): see the module docstring",
                reference="paper", gmacs=100.032,
                notes="torchvision has no SSD512; the configuration is the paper's and its released SSD512 model's."))
def ssd512_vgg16(**kwargs: Any) -> SSD:
    """SSD512: seven prediction maps (64² … 1²) with the extra conv12, 24,564 default boxes."""
    config: dict[str, Any] = dict(
        image_size=512, extra_layers=SSD512_EXTRA_LAYERS,
        aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,)),
        steps=(8, 16, 32, 64, 128, 256, 512), clip_default_boxes=False)
    return SSD(**{**config, **kwargs})


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "ssd300_vgg16"])
