"""Converters from timm's state_dicts, one per architecture class, in :data:`CONVERTERS`."""

from __future__ import annotations

from paperzoo.interop import torchvision

# timm's ResNet (``timm.create_model("resnet50")``, the same v1.5 network) keeps torchvision's names.
CONVERTERS = {"ResNet": torchvision.resnet}
