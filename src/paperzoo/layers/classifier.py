"""What every image classifier of the zoo shares: timm's model interface, written once.

A classifier is a stem, a sequence of feature levels (the stages of the paper, each a map at a coarser stride),
optionally some layers after the last level (a final norm, EfficientNet's 1×1 head convolution), and a head:
global pooling, dropout and the layer that gives the logits. A model file says only which of its modules play
these parts; :class:`ImageClassifier` owns the plumbing that timm's and torchvision's users call, the way Hugging
Face's ``PreTrainedModel`` owns what every transformer shares:

* ``forward_features`` (the unpooled map), ``forward_head(x, pre_logits=False)``, ``forward`` (both), and with
  ``features_only`` the maps of the levels in ``out_indices``;
* ``forward_intermediates(x, indices, norm, stop_early, output_fmt, intermediates_only)`` and
  ``prune_intermediate_layers(indices, prune_norm, prune_head)``, timm's feature API;
* ``feature_info`` (a :class:`~paperzoo.layers.features.FeatureInfo`), ``num_features`` (the channels of
  ``forward_features``' output) and ``head_hidden_size`` (the width that enters the classifier);
* ``get_classifier``, ``reset_classifier(num_classes, global_pool=None)``, ``set_grad_checkpointing``;
* ``pretrained_cfg`` / ``default_cfg``: the input size, crop, interpolation and normalisation of the variant's
  published weights (the same data as ``paperzoo.transforms``), or of its card where it has none.

A model file declares (class attributes or set in ``__init__``):

``feature_info``
    every level of the full network: its channels, stride and the dotted name of the module whose output it is.
``level_modules``
    optional: for each level, the dotted names of the modules that compute it from the previous level's output,
    where that is more than the one module ``feature_info`` names (VGG's levels are slices of ``features``).
``final_modules``
    the modules applied after the last level in ``forward_features`` (a final norm), if any.
``head_modules``
    the modules of the head besides the pooling and the classifier (pre-logits layers), removed by pruning.
``classifier_name``, ``first_conv``
    the dotted names of the logits layer and of the first convolution (as timm's ``pretrained_cfg``).
``head_dropout_name``
    the model's dropout before the classifier, which ``drop_rate`` sets (none: ``head_drop``, dropout at
    ``drop_rate``, 0 by default).

and implements ``forward_stem`` when its stem is more than one module named ``stem``. Whatever differs from this
shape (auxiliary classifiers, HRNet's parallel branches, NASNet's two-input cells, a transformer's tokens)
overrides the method concerned in the model file, next to the paper it comes from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers.checkpoint import checkpoint_module, checkpointing
from paperzoo.layers.features import FeatureInfo
from paperzoo.layers.stochastic_depth import StochasticDepth
from paperzoo.layers.validation import check_image_batch

__all__ = ["ClassifierPool", "ImageClassifier", "NotApplicableError", "feature_indices"]

POOL_TYPES = ("avg", "max", "avgmax", "")


class NotApplicableError(TypeError):
    """A part of timm's interface that an architecture cannot have (CapsNet has no pooled features); the
    message says why. A ``TypeError``, as timm's models raise for an argument they do not take."""


class ClassifierPool(nn.Module):
    """Global pooling before the classifier, flattened to ``(N, C)``: ``"avg"`` (every network here), ``"max"``,
    ``"avgmax"`` (their mean), or ``""``: none, the map is passed on unpooled (timm's ``global_pool=''``)."""

    def __init__(self, pool_type: str = "avg", input_fmt: str = "NCHW") -> None:
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f"global_pool must be one of {', '.join(map(repr, POOL_TYPES))}, got {pool_type!r}")
        self.pool_type = pool_type
        self.input_fmt = input_fmt
        self.dims = (-2, -1) if input_fmt == "NCHW" else (1, 2)  # the spatial axes (Swin works channels-last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "":
            return x
        if self.pool_type == "avg":
            pooled = x.mean(self.dims)
        elif self.pool_type == "max":
            pooled = x.amax(self.dims)
        else:
            pooled = 0.5 * (x.mean(self.dims) + x.amax(self.dims))
        return pooled  # (N, C, H, W) → (N, C)

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type!r}" + (f", input_fmt={self.input_fmt!r}" if self.input_fmt != "NCHW" else "")


def feature_indices(indices: int | Sequence[int] | None, count: int) -> list[int]:
    """timm's rule: ``None`` every level, an int ``n`` the last ``n``, a list those (negative from the end)."""
    if indices is None:
        return list(range(count))
    if isinstance(indices, int):
        if not 0 < indices <= count:
            raise ValueError(f"indices={indices} asks for the last {indices} of {count} feature levels; "
                             f"give 1 to {count}")
        return list(range(count - indices, count))
    taken = [i + count if i < 0 else i for i in indices]
    if any(not 0 <= i < count for i in taken):
        raise ValueError(f"indices {list(indices)} out of range: this network has {count} feature levels "
                         f"(0 to {count - 1}, or negative from the end)")
    return taken


class ImageClassifier(nn.Module):
    """Base class of every image classifier: the interface of the module docstring, from the declarations of the
    subclass."""

    model_name = "classifier"
    classifier_name = "fc"
    first_conv = "conv1.conv"
    min_input_size = 1
    output_fmt = "NCHW"  # the layout of what forward_features (or a features_only forward) returns, as timm
    map_fmt = "NCHW"  # the layout the network computes its maps in (Swin: channels-last)
    level_modules: tuple[tuple[str, ...], ...] | None = None
    final_modules: tuple[str, ...] = ()
    head_modules: tuple[str, ...] = ()
    head_dropout_name: str | None = None
    # How the drop_path_rate keyword spreads over the stochastic-depth modules, shallow to deep: "linear" gives
    # module i of n rate·i/(n−1) (the last one the rate), "torchvision" rate·i/n (EfficientNet's rule).
    drop_path_schedule = "linear"
    no_levels_reason = ""  # why a network without feature levels has none (said by features_only and the rest)
    features_only = False
    out_indices: tuple[int, ...] = ()
    grad_checkpointing = False
    no_checkpointing_reason = ""  # why checkpointing would save nothing here (set_grad_checkpointing says so)

    drop_rate = 0.0  # timm's drop_rate: dropout before the classifier, where the model has no dropout module

    # --- what the model file declares -------------------------------------------------------------------------

    @property
    def feature_info(self) -> FeatureInfo:
        """The levels ``forward_intermediates`` returns; of a ``features_only`` backbone, those it returns."""
        levels = self.__dict__.get("_levels", FeatureInfo())
        return levels.select(self.out_indices) if self.features_only else levels

    @feature_info.setter
    def feature_info(self, value: FeatureInfo | Sequence) -> None:
        self.__dict__["_levels"] = value if isinstance(value, FeatureInfo) else FeatureInfo(value)

    @property
    def all_levels(self) -> FeatureInfo:
        """Every feature level of the network as built, whatever ``features_only`` returns."""
        return self.__dict__.get("_levels", FeatureInfo())

    @property
    def head_hidden_size(self) -> int:
        """The width of the features that enter the classifier (``forward_head(x, pre_logits=True)``)."""
        return self.__dict__.get("_head_hidden_size", self.num_features)

    @head_hidden_size.setter
    def head_hidden_size(self, value: int) -> None:
        self.__dict__["_head_hidden_size"] = value

    def _level_names(self) -> list[tuple[str, ...]]:
        if self.level_modules is not None:
            return [tuple(names) for names in self.level_modules]
        return [(level.module,) for level in self.all_levels]

    # --- the forward pass -------------------------------------------------------------------------------------

    def check_input(self, x: torch.Tensor) -> None:
        """The shared input check (layers/validation.py): ``(N, in_chans, H, W)`` of the weights' dtype."""
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The layers before the first feature level (here: the module ``stem``)."""
        return self.stem(x)

    def _run(self, names: tuple[str, ...], x: torch.Tensor) -> torch.Tensor:
        modules = [self.get_submodule(name) for name in names]
        if not checkpointing(self):
            for module in modules:
                x = module(x)
            return x
        # Checkpointed unit by unit (a stage's blocks one by one), so the memory held is one unit's activations at
        # a time. An in-place activation joins the unit before it: alone it would overwrite the input that its own
        # checkpoint saved for the backward pass.
        units: list[list[nn.Module]] = []
        for module in modules:
            for unit in (module.children() if isinstance(module, (nn.Sequential, nn.ModuleList)) else (module,)):
                if units and getattr(unit, "inplace", False):
                    units[-1].append(unit)
                else:
                    units.append([unit])
        for unit in units:
            x = checkpoint_module(unit[0] if len(unit) == 1 else nn.Sequential(*unit), x)
        return x

    def forward_final(self, x: torch.Tensor) -> torch.Tensor:
        """The layers after the last feature level that ``forward_features`` still includes."""
        for name in self.final_modules:
            x = self.get_submodule(name)(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, H, W)`` → the last unpooled feature map ``(N, num_features, h, w)``."""
        if not self.all_levels:  # a network without stages (CapsNet, ODE-Net): its stem, then its final layers
            self.check_input(x)
            return self.forward_final(self.forward_stem(x))
        return self.forward_intermediates(x, indices=[], intermediates_only=False)[0]

    def _no_levels(self) -> None:
        if not self.all_levels:
            raise NotApplicableError(f"{self.model_name} has no feature levels to return: {self.no_levels_reason}")

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's feature API: the maps of the feature levels ``indices`` (``None``: all; an int ``n``: the last
        ``n``), and unless ``intermediates_only`` the output of ``forward_features`` too, as ``(final, maps)``.
        ``stop_early`` skips the levels after the last one asked for (with ``intermediates_only``, always).
        ``norm`` applies to networks whose levels end in a shared norm (the transformers), a no-op for CNNs.
        ``output_fmt``: the maps' layout, ``"NCHW"`` or ``"NHWC"``, whatever the network's own (``output_fmt``,
        the layout of ``forward_features``' output: channels-last for Swin)."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        self._no_levels()
        self.check_input(x)
        levels = self._level_names()
        take = feature_indices(indices, len(levels))
        last = max(take, default=-1) if (stop_early or intermediates_only) else len(levels) - 1
        intermediates = []
        x = self.forward_stem(x)
        for index, names in enumerate(levels[:last + 1]):
            x = self._run(names, x)
            if index in take:
                intermediates.append(x if output_fmt == self.map_fmt else
                                     x.permute(0, 3, 1, 2) if output_fmt == "NCHW" else x.permute(0, 2, 3, 1))
        if intermediates_only:
            return intermediates
        return self.forward_final(x), intermediates

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map → logits ``(N, num_classes)``; ``pre_logits``: the features the classifier takes
        ``(N, head_hidden_size)``."""
        # global_pool="" passes the map on: a LayerNorm then normalises each pixel (decided from the pool's
        # setting, not x.ndim, which torch.fx cannot branch on)
        unpooled = getattr(self.global_pool, "pool_type", None) == ""
        x = self.global_pool(x)
        for name in self.head_modules:
            module = self.get_submodule(name)
            if unpooled and isinstance(module, nn.LayerNorm) and self.map_fmt == "NCHW":
                x = module(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            else:
                x = module(x)
        x = self.head_drop(x)
        return x if pre_logits else self.get_classifier()(x)

    def head_drop(self, x: torch.Tensor) -> torch.Tensor:
        """The dropout before the classifier: the model's own module, or ``drop_rate``."""
        if self.head_dropout_name is not None:
            return self.get_submodule(self.head_dropout_name)(x)
        return F.dropout(x, self.drop_rate, self.training) if self.drop_rate > 0 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_intermediates(x, indices=self.out_indices, intermediates_only=True)
        return self.forward_head(self.forward_features(x))

    # --- the head ---------------------------------------------------------------------------------------------

    def get_classifier(self) -> nn.Module:
        """The layer that gives the logits."""
        return self.get_submodule(self.classifier_name)

    def _new_classifier(self, num_classes: int, like: nn.Module) -> nn.Module:
        """A freshly initialised logits layer of ``num_classes`` outputs on ``like``'s device and dtype."""
        if num_classes <= 0:
            return nn.Identity()
        reference = next(like.parameters(), None) if like is not None else None
        reference = reference if reference is not None else next(self.parameters())
        layer = nn.Linear(self.head_hidden_size, num_classes, device=reference.device, dtype=reference.dtype)
        self.init_classifier(layer)
        return layer

    def init_classifier(self, layer: nn.Module) -> None:
        """How a new classifier is initialised: torch's default, unless the paper's differs (the model says)."""

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a freshly initialised one of ``num_classes`` outputs (0: none, ``forward``
        returns the pooled features), and the global pooling if ``global_pool`` is given (``""``: none)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be 0 (no classifier) or more, got {num_classes}")
        if global_pool is not None:
            self.set_global_pool(global_pool)
        old = self.get_classifier()
        new = self._new_classifier(num_classes, old)
        new.train(self.training)
        self.set_submodule(self.classifier_name, new)
        self.num_classes = num_classes

    def set_global_pool(self, global_pool: str) -> None:
        """The global pooling before the classifier (``create_model(..., global_pool=...)``), classifier kept."""
        if not isinstance(getattr(self, "global_pool", None), ClassifierPool):
            raise NotApplicableError(f"{self.model_name} pools inside its head; global_pool does not apply")
        self.global_pool = ClassifierPool(global_pool, self.map_fmt)

    def set_drop_rate(self, drop_rate: float) -> None:
        """The dropout probability before the classifier (timm's ``drop_rate``)."""
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        if self.head_dropout_name is None:
            self.drop_rate = drop_rate
        else:
            self.get_submodule(self.head_dropout_name).p = drop_rate

    def set_drop_path_rate(self, drop_path_rate: float) -> None:
        """Stochastic depth: the drop probability of the deepest residual branch, the others less with depth
        (timm's ``drop_path_rate``)."""
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        modules = [m for m in self.modules() if isinstance(m, StochasticDepth)]
        if not modules:
            raise NotApplicableError(f"{self.model_name} has no stochastic depth (no residual branch to drop); "
                                     "leave drop_path_rate out")
        n = len(modules)
        for i, module in enumerate(modules):
            module.p = drop_path_rate * (i / max(n - 1, 1) if self.drop_path_schedule == "linear" else i / n)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint each block in training: its activations are recomputed in the backward pass instead of
        kept (layers/checkpoint.py)."""
        if self.no_checkpointing_reason:
            raise NotApplicableError(f"{self.model_name} has no gradient checkpointing: {self.no_checkpointing_reason}")
        self.grad_checkpointing = enable

    # --- features_only and pruning ----------------------------------------------------------------------------

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Remove the levels after the deepest of ``indices`` (and the head, the final layers if ``prune_norm``),
        so that a backbone keeps only what its features need. Returns the levels kept, as timm."""
        self._no_levels()
        levels = self._level_names()
        take = feature_indices(indices, len(levels))
        deepest = max(take)
        for names in levels[deepest + 1:]:
            for name in names:
                self.set_submodule(name, nn.Identity())
        self.__dict__["_levels"] = FeatureInfo(self.all_levels[:deepest + 1])
        if self.level_modules is not None:
            self.level_modules = tuple(self.level_modules[:deepest + 1])
        if deepest + 1 < len(levels) or prune_norm:
            for name in self.final_modules:
                self.set_submodule(name, nn.Identity())
            self.final_modules = ()
            self.num_features = self.all_levels[deepest].channels
        if prune_head:
            for name in self.head_modules:
                self.set_submodule(name, nn.Identity())
            self.head_modules = ()
            self.__dict__.pop("_head_hidden_size", None)
            self.reset_classifier(0, "" if isinstance(getattr(self, "global_pool", None), ClassifierPool) else None)
        return take

    def as_backbone(self, out_indices: Sequence[int] | None = None) -> None:
        """``features_only=True``: keep the levels up to the deepest of ``out_indices``, drop the head, and make
        ``forward`` return the maps of ``out_indices`` (``feature_info`` describes them)."""
        self._no_levels()
        try:
            take = feature_indices(out_indices, len(self.all_levels))
        except ValueError as error:
            raise ValueError(f"out_indices: {error}") from None
        self.prune_intermediate_layers(take, prune_norm=True, prune_head=True)
        self.features_only = True
        self.out_indices = tuple(take)
        self.output_fmt = "NCHW"  # the maps, channels-first whatever the network's own layout

    # --- pretrained_cfg ---------------------------------------------------------------------------------------

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's ``pretrained_cfg``: how the variant's default published weights were evaluated (the same data
        as ``paperzoo.transforms``), or for a variant without weights its card's input and ImageNet statistics."""
        cfg = self.__dict__.get("_pretrained_cfg")
        if cfg is None:
            cfg = self.__dict__["_pretrained_cfg"] = self._resolve_cfg()
        return cfg

    @pretrained_cfg.setter
    def pretrained_cfg(self, value: dict[str, Any]) -> None:
        value = _Cfg(value, model=self)
        if "input_size" in value:  # the feature map's size follows the input's
            dict.pop(value, "pool_size", None)
        self.__dict__["_pretrained_cfg"] = value

    @property
    def default_cfg(self) -> dict[str, Any]:
        return self.pretrained_cfg

    def _resolve_cfg(self) -> dict[str, Any]:
        from paperzoo import registry
        from paperzoo.weights import IMAGENET_MEAN, IMAGENET_STD, image_preprocessing, published_weights

        name = self.model_name
        known = name in registry.list_models()
        card = registry.model_card(name) if known else None
        size = tuple(card.input.shape[-2:]) if card is not None else (224, 224)
        weights = next(iter(published_weights(name)), None) if known else None
        preprocessing = image_preprocessing(weights) if weights is not None else None
        cfg = _Cfg({
            "architecture": name,
            "tag": weights.tag if weights is not None else "",
            "source": weights.source if weights is not None else "",
            "url": weights.url if weights is not None else "",
            "hf_hub_id": weights.hub_repo if weights is not None else "",
            "num_classes": self.num_classes,
            "input_size": (self.in_chans, *size),
            "min_input_size": (self.in_chans, self.min_input_size, self.min_input_size),
            "fixed_input_size": bool(card is not None and card.input.fixed_size),
            "interpolation": "bilinear",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "first_conv": self.first_conv,
            # the layer whose weight the checkpoint's classifier is (inside a conv-act classifier: its conv)
            "classifier": next((f"{self.classifier_name}.{n}".removesuffix(".weight") for n, _ in
                                self.get_classifier().named_parameters() if n.endswith("weight")),
                               self.classifier_name),
        }, model=self)
        if preprocessing is not None and preprocessing.crop:
            # the weights' crop and resize decide the evaluation size (EfficientNet-B1 at 240, not the card's)
            cfg["input_size"] = (self.in_chans, preprocessing.crop, preprocessing.crop)
            cfg["crop_pct"] = round(preprocessing.crop / preprocessing.resize, 4) if preprocessing.resize else 1.0
            cfg["interpolation"] = preprocessing.interpolation
            cfg["mean"], cfg["std"] = tuple(preprocessing.mean), tuple(preprocessing.std)
        return cfg

    def _pool_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The spatial size of ``forward_features``' output at the input ``size``: measured on the meta device
        (no memory, nothing computed), which also covers unpadded convolutions; once per variant and size."""
        key = (type(self), self.model_name, self.in_chans, tuple(size), tuple(self.all_levels.reduction()))
        if key not in _POOL_SIZES:
            _POOL_SIZES[key] = self._measure_pool_size(size)
        return _POOL_SIZES[key]

    def _measure_pool_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """One forward_features pass of a zero image, in eval mode and without gradients (running statistics
        untouched): exact for unpadded convolutions too. On the meta device where the model is (nothing computed,
        but torch's meta kernels are slow), on its own device otherwise."""
        parameter = next(self.parameters())
        x = torch.zeros(1, self.in_chans, *size, device=parameter.device, dtype=parameter.dtype)
        modes = {module: module.training for module in self.modules()}
        try:
            with torch.no_grad():
                out = self.eval().forward_features(x)
        except Exception:  # noqa: BLE001 - a size the network refuses: from its stride, as a guess
            reduction = self.all_levels[-1].stride if len(self.all_levels) else 32
            return (math.ceil(size[0] / reduction), math.ceil(size[1] / reduction))
        finally:
            for module, mode in modes.items():
                module.training = mode
        return tuple(out.shape[-2:]) if self.output_fmt == "NCHW" else tuple(out.shape[1:3])


_POOL_SIZES: dict[tuple, tuple[int, int]] = {}


class _Cfg(dict):
    """``pretrained_cfg``: a dict whose ``pool_size`` (the feature map's size at ``input_size``) is measured when
    first read, not each time a model is built."""

    def __init__(self, values: dict[str, Any], model: ImageClassifier) -> None:
        super().__init__(values)
        self.model = model

    def _fill(self) -> None:
        if not dict.__contains__(self, "pool_size"):
            dict.__setitem__(self, "pool_size", self.model._pool_size(tuple(dict.__getitem__(self, "input_size")[-2:])))

    def __getitem__(self, key: str) -> Any:
        if key == "pool_size":
            self._fill()
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __contains__(self, key: object) -> bool:
        return key == "pool_size" or super().__contains__(key)

    def __iter__(self):  # noqa: ANN204
        self._fill()
        return super().__iter__()

    def items(self):  # noqa: ANN201
        self._fill()
        return super().items()

    def keys(self):  # noqa: ANN201
        self._fill()
        return super().keys()

    def __repr__(self) -> str:
        self._fill()
        return super().__repr__()
