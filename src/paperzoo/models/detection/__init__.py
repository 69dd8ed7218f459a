"""Object detection and instance segmentation: Faster R-CNN, Mask R-CNN, RetinaNet, SSD, YOLOv3, one file per
paper, and the parts they share, written once:

- ``transform.py``: resize (shorter side to ``min_size``, longer at most ``max_size``), normalise, pad and batch
  the images (:class:`DetectionTransform`, :class:`ImageBatch`); map detections back to the input's pixels.
- ``boxes.py``: the R-CNN box parametrisation (:class:`BoxCoder`), IoU matching (:class:`Matcher`), balanced
  sampling of positives and negatives (:class:`BalancedSampler`), :class:`FrozenBatchNorm2d`.
- ``anchors.py``: anchors at every position of every feature map (:class:`AnchorGenerator`).
- ``fpn.py``: the Feature Pyramid Network and its extra levels (P6 by pooling, or P6/P7 for RetinaNet).
- ``backbone.py``: a registered ResNet under an FPN (:class:`ResNetFPNBackbone`).
- ``evaluation.py``: mean average precision (VOC all-point interpolation).

Every detector follows torchvision's convention: ``model(images: list[Tensor[3, H, W]], targets=None)``; in
training mode with targets it returns a dict of scalar losses, in eval mode one dict per image with ``boxes``
(xyxy, in the input image's pixels), ``labels`` (int64), ``scores`` (and ``masks`` ``[K, 1, H, W]`` for
instance segmentation). The shared parts follow torchvision's ``models/detection`` arithmetic so that detectors
converted from torchvision give the same outputs.
"""
