"""``get_classifier`` and ``reset_classifier`` for the models whose class scores do not come from one linear head:
segmentation networks (a 1×1 convolution per head, the auxiliary head's too) and detectors (Fast R-CNN's box
predictor, RetinaNet's and SSD's convolutional class predictors, YOLOv3's output convolutions).

A new data set with another number of classes keeps the trained backbone and replaces only what cannot fit: the
way torchvision's fine-tuning tutorial swaps a detector's ``FastRCNNPredictor`` and ``MaskRCNNPredictor`` for ones
with the new number of classes, and timm's ``reset_classifier`` a classifier's head. Here every layer whose shape
depends on the number of classes is built anew and initialised as the model's constructor does (a class-score
prior, He or Xavier initialisation); every other weight, the backbone's, the head's other layers', is kept::

    model = paperzoo.create_model("fasterrcnn_resnet50_fpn", pretrained=True)
    model.reset_classifier(3)  # two object classes and the background: a new box predictor, the rest trained

A model lists those layers in ``class_layer_names`` (the one giving the main output's scores first) and, where one
is not a plain convolution with the classes as its outputs, says in ``new_class_layer`` how to build it.
"""

from __future__ import annotations

from torch import nn


class ClassLayersMixin:
    """``get_classifier`` / ``reset_classifier(num_classes)`` for an ``nn.Module`` whose layers named in
    ``class_layer_names`` (dotted paths; one that is ``None`` in this build, an auxiliary head left out, is skipped)
    are the ones whose shape depends on ``num_classes``."""

    class_layer_names: tuple[str, ...] = ()
    min_num_classes = 1  # 2 where class 0 is the background: at least one object class

    def new_class_layer(self, name: str, layer: nn.Module, num_classes: int) -> nn.Module:
        """A layer for ``num_classes`` classes in place of ``layer`` (the one at ``name``), initialised as the
        constructor initialises it. Here: a convolution like ``layer`` with ``num_classes`` output channels and
        PyTorch's default initialisation (torchvision's segmentation heads); a model overrides it for other layers."""
        if type(layer) is not nn.Conv2d or layer.groups != 1:
            raise NotImplementedError(f"{type(self).__name__}.new_class_layer does not say how to rebuild {name} "
                                      f"({type(layer).__name__}) for another number of classes")
        return nn.Conv2d(layer.in_channels, num_classes, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                         dilation=layer.dilation, bias=layer.bias is not None)

    def _class_layers(self) -> dict[str, nn.Module]:
        layers = {}
        for name in self.class_layer_names:
            module = self
            for part in name.split("."):
                module = getattr(module, part, None)
            if module is not None:
                layers[name] = module
        return layers

    def get_classifier(self) -> nn.Module:
        """The layer that gives the class scores, or, where several do (an auxiliary head's, YOLOv3's three
        scales), an ``nn.ModuleDict`` of them keyed by their paths (``"aux_head/classifier"``)."""
        layers = self._class_layers()
        if len(layers) == 1:
            return next(iter(layers.values()))
        return nn.ModuleDict({name.replace(".", "/"): layer for name, layer in layers.items()})

    def reset_classifier(self, num_classes: int) -> None:
        """Replace every layer whose shape depends on the number of classes by a new one for ``num_classes``,
        initialised as at construction, on the same device and dtype; keep every other weight."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < self.min_num_classes:
            background = " (the background, class 0, included)" if self.min_num_classes == 2 else ""
            raise ValueError(f"{getattr(self, 'model_name', type(self).__name__)}.reset_classifier expects "
                             f"num_classes, an int >= {self.min_num_classes}{background}; got {num_classes!r}")
        for name, old in self._class_layers().items():
            new = self.new_class_layer(name, old, num_classes)
            reference = next(old.parameters(), None)
            if reference is not None:
                new = new.to(device=reference.device, dtype=reference.dtype)
            parent, _, attribute = name.rpartition(".")
            setattr(self.get_submodule(parent) if parent else self, attribute, new)
        self.num_classes = num_classes
