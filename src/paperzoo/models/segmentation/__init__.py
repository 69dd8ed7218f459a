"""Semantic segmentation: U-Net, FCN, DeepLabV3, PSPNet, one file per paper.

Each model maps images ``(N, C, H, W)`` to ``{"out": class scores (N, K, h, w)}`` (plus ``"aux"`` where an
auxiliary head is built), as torchvision's segmentation models do, and has ``loss(outputs, target)``: its
paper's per-pixel loss against a map of class indices ``(N, h, w)``, where 255 marks pixels to ignore. The
backbones come through ``paperzoo.create_model(..., features_only=True)``.
"""
