"""Published weights: ``create_model(name, pretrained=True | "TAG")``, and the preprocessing they were evaluated with.

The weights are the reference implementations' own files, converted with :mod:`paperzoo.interop`:

* torchvision's (``https://download.pytorch.org/models/<name>-<sha256 prefix>.pth``), downloaded with
  ``torch.hub.load_state_dict_from_url(check_hash=True, weights_only=True)`` into torch.hub's ``checkpoints/``
  folder (``$TORCH_HOME/hub/checkpoints``), where torchvision keeps them too;
* timm's and transformers' Hugging Face Hub files (``timm/<model>.<tag>/model.safetensors``,
  ``openai-community/gpt2/model.safetensors``), downloaded with ``huggingface_hub.hf_hub_download`` into the Hub
  cache (``$HF_HUB_CACHE``), where timm and transformers keep them too; ``HF_HUB_OFFLINE=1`` reads the cache only.
  ``huggingface_hub`` is the optional extra ``pip install "paperzoo[hub]"``.

What each variant has is data, in ``_published.py``, which ``scripts/generate_weights_table.py`` writes from the
installed torchvision and timm (and ``tests/test_weights.py`` checks against them): so a card, ``paperzoo info`` and
the README show the weights without importing a reference library, and the table says in one place what
torchvision's builders do besides loading a file (force ``transform_input``, delete auxiliary heads, overwrite the
FrozenBatchNorm epsilon).

A ``num_classes`` other than the weights' (or ``features_only=True``) loads everything but the layers whose shape
depends on it, which keep their fresh initialisation, as ``timm.create_model(..., pretrained=True, num_classes=K)``
does: the transfer-learning start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from paperzoo.registry import create_model, model_card, parse_reference

if TYPE_CHECKING:  # torch is imported where weights are loaded, not where `paperzoo info` describes them
    import torch
    from torch import nn

# ImageNet's statistics, the normalisation every classifier in the zoo was trained with, for a model without weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How images were prepared when the weights were evaluated: resize the shorter side to ``resize`` with
    ``interpolation``, center-crop ``crop`` (``None``: no crop), scale to [0, 1], normalise with ``mean``/``std``
    (empty: no normalisation, as torchvision's detectors, which normalise inside the model)."""

    resize: int | None = None
    crop: int | None = None
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def transforms(self) -> Any:
        """The ``torchvision.transforms.v2`` pipeline: a PIL image or uint8 tensor in, a float tensor out."""
        import torch
        from torchvision.transforms import InterpolationMode, v2

        steps: list[Any] = [v2.ToImage()]
        if self.resize is not None:
            steps.append(v2.Resize(self.resize, interpolation=InterpolationMode(self.interpolation), antialias=True))
        if self.crop is not None:
            steps.append(v2.CenterCrop(self.crop))
        steps.append(v2.ToDtype(torch.float32, scale=True))
        if self.mean:
            steps.append(v2.Normalize(list(self.mean), list(self.std)))
        return v2.Compose(steps)

    def describe(self) -> str:
        parts = [f"resize {self.resize} ({self.interpolation})"] if self.resize else []
        parts += [f"center crop {self.crop}"] if self.crop else []
        parts += [f"mean {list(self.mean)}, std {list(self.std)}"] if self.mean else ["scale to [0, 1]"]
        return ", ".join(parts)


@dataclass(frozen=True)
class PublishedWeights:
    """One published set of weights of one variant (a row of ``_published.py``)."""

    model: str
    tag: str
    default: bool
    source: str  # the library whose layout the file has: "torchvision", "timm" or "transformers"
    url: str = ""  # torchvision: the file's URL, named <name>-<first 8 hex digits of its sha256>.pth
    hub_repo: str = ""  # timm, transformers: the Hugging Face Hub repository and file
    hub_file: str = ""
    categories: str | None = None  # "imagenet-1k", "coco", "voc": the class names, in _categories.py
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # dataset → metric → value, as published
    file_size_mb: float | None = None
    recipe: str = ""
    preprocessing: Preprocessing | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # how to build our model for this file
    drop_prefixes: tuple[str, ...] = ()  # the file's auxiliary heads that the card's configuration does not have
    # our model's tensors the file does not hold: a fine-tuning head on a pre-trained encoder (BERT's classifier on
    # bert-base-uncased) keeps its fresh initialisation, as transformers' from_pretrained leaves it
    fresh_prefixes: tuple[str, ...] = ()
    frozen_norm_eps: float | None = None  # torchvision's detectors trained with this FrozenBatchNorm epsilon
    licence: str = ""

    @property
    def location(self) -> str:
        return self.url or f"https://huggingface.co/{self.hub_repo}/blob/main/{self.hub_file}"

    @property
    def category_names(self) -> list[str] | None:
        from paperzoo.weights._categories import CATEGORIES  # 17 kB of names, read when asked for

        return CATEGORIES[self.categories] if self.categories else None

    def describe(self) -> str:
        """One line: ``IMAGENET1K_V2 (default): ImageNet-1K acc@1 80.858, acc@5 95.434; 97.8 MB; <where>``."""
        metrics = "; ".join(f"{dataset} " + ", ".join(f"{k} {v:g}" for k, v in values.items())
                            for dataset, values in self.metrics.items())
        parts = [f"{self.tag}" + (" (default)" if self.default else "")]
        parts += [metrics or "no metric in the reference's metadata"]
        parts += [f"{self.file_size_mb:.1f} MB"] if self.file_size_mb else []
        parts += [f"licence {self.licence}"] if self.licence else []
        return ": ".join(parts[:2]) + "".join(f"; {p}" for p in parts[2:]) + f"\n  {self.source}: {self.location}"


def _entry(name: str, row: dict[str, Any]) -> PublishedWeights:
    row = dict(row)
    preprocessing = row.pop("preprocessing")
    if preprocessing is not None:
        preprocessing = Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in preprocessing.items()})
    return PublishedWeights(model=name, preprocessing=preprocessing, drop_prefixes=tuple(row.pop("drop_prefixes")),
                            fresh_prefixes=tuple(row.pop("fresh_prefixes", ())), **row)


def _table() -> dict[str, list[dict[str, Any]]]:
    """The table, imported on first use: ``import paperzoo`` stays as fast as before (it is 160 kB of Python)."""
    from paperzoo.weights._published import PUBLISHED

    return PUBLISHED


def published_weights(name: str) -> tuple[PublishedWeights, ...]:
    """Every published set of weights of the registered variant ``name`` (empty if there is none), default first."""
    model_card(name)  # an unknown name raises the registry's "did you mean" error
    entries = tuple(_entry(name, row) for row in _table().get(name, ()))
    return tuple(sorted(entries, key=lambda w: not w.default))


def no_weights_reason(name: str) -> str | None:
    """Why ``name`` has no published weights (``None`` if it has some)."""
    if _table().get(name):
        return None

    card = model_card(name)
    library = parse_reference(card.reference)[0]
    if library == "paper":
        # `paperzoo train` trains the image classifiers only, so far (issue 25 is the other tasks)
        how = ("train it with `paperzoo train` or load your own" if card.task == "image-classification"
               else "train it and load your weights")
        return f"its reference is the paper, not an implementation that publishes weights; {how} with load_weights"
    if library == "torch.nn":
        return "it is a layer (the reference is torch.nn), which has no trained weights of its own"
    return f"its reference ({card.reference}) publishes no weights for this configuration"


def get_weights(name: str, pretrained: bool | str = True) -> PublishedWeights:
    """The weights that ``pretrained`` names: ``True`` the reference's default, a string the tag (any case)."""
    available = published_weights(name)
    if not available:
        raise ValueError(f"{name} has no published weights: {no_weights_reason(name)}")
    if pretrained is True:
        return available[0]
    if not isinstance(pretrained, str):
        raise ValueError(f"pretrained must be True or a tag, got {pretrained!r}")
    for weights in available:
        if weights.tag.lower() == pretrained.lower():
            return weights
    raise ValueError(f"{name} has no weights tagged {pretrained!r}; available: "
                     f"{', '.join(w.tag + (' (default)' if w.default else '') for w in available)}")


_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _file_layout(weights: PublishedWeights, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's tensors in the reference model's layout: auxiliary heads the card's configuration lacks are
    dropped; torchvision's DenseNet files keep their pre-0.4 names (``norm.1``), which its builder renames
    (``norm1``) as this does; transformers renames old checkpoints' LayerNorm ``gamma``/``beta`` on load too."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(weights.drop_prefixes):
            continue
        if weights.source == "torchvision":
            key = _DENSENET_LEGACY.sub(r"\1\2", key)
        elif weights.source == "transformers":
            key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))
        out[key] = value
    return out


def create_pretrained(name: str, pretrained: bool | str, **kwargs: Any) -> nn.Module:
    """``create_model(name, pretrained=..., **kwargs)``: build for the weights, download (or read the cache),
    convert, load. ``kwargs`` override the weights' configuration; a changed ``num_classes`` or ``features_only``
    keeps the layers it reshapes (or removes) freshly initialised."""
    from paperzoo.interop import convert_state_dict
    from paperzoo.weights.download import fetch_state_dict

    weights = get_weights(name, pretrained)
    if kwargs.get("in_chans", 3) != 3 and model_card(name).input.kind == "image":
        raise ValueError(f"the {weights.tag} weights of {name} take 3-channel images; in_chans={kwargs['in_chans']} "
                         "does not fit them (build with pretrained=False, or convert the images to RGB)")
    new_head = ("num_classes" in kwargs and kwargs["num_classes"] != weights.model_kwargs.get("num_classes")
                or bool(kwargs.get("features_only")))
    model = create_model(name, **{**weights.model_kwargs, **kwargs})
    state_dict = convert_state_dict(model, _file_layout(weights, fetch_state_dict(weights)), weights.source)
    own = model.state_dict()
    reshaped: set[str] = set()
    if new_head:  # as timm: everything but what the new head reshapes (or, features_only, leaves out)
        reshaped = {k for k in own.keys() & state_dict.keys() if own[k].shape != state_dict[k].shape}
        state_dict = {k: v for k, v in state_dict.items() if k in own and k not in reshaped}
    # Files saved before torch 0.4.1 (most of torchvision's ImageNet ones) have no BatchNorm num_batches_tracked, a
    # counter that only momentum=None uses: the model keeps its own, as torch's BatchNorm does loading them.
    missing = sorted(k for k in own.keys() - state_dict.keys() - reshaped
                     if not k.endswith("num_batches_tracked") and not k.startswith(weights.fresh_prefixes))
    unexpected = sorted(state_dict.keys() - own.keys())
    conflicts = sorted(k for k in own.keys() & state_dict.keys() if own[k].shape != state_dict[k].shape)
    if missing or unexpected or conflicts:
        first = (missing or unexpected or conflicts)[0]
        raise ValueError(f"the {weights.tag} weights do not fit {name} built with {kwargs or 'its defaults'}: "
                         f"{len(missing)} missing, {len(unexpected)} unexpected, {len(conflicts)} mis-shaped tensors "
                         f"(first: {first}); build it with the weights' own configuration {weights.model_kwargs}")
    model.load_state_dict(state_dict, strict=False)
    if weights.frozen_norm_eps is not None:
        for module in model.modules():
            if type(module).__name__ == "FrozenBatchNorm2d":
                module.eps = weights.frozen_norm_eps
    model.pretrained_weights = weights  # read by transforms(model) and by paperzoo predict
    return model


def transforms(name_or_model: str | nn.Module, tag: str | None = None) -> Any:
    """The ``torchvision.transforms.v2`` pipeline that the weights were evaluated with (resize, center crop,
    interpolation, mean/std), as torchvision's ``weights.transforms()`` or timm's ``resolve_data_config`` and
    ``create_transform``. A model built with ``pretrained=`` uses its own weights' unless ``tag`` names others."""
    from torch import nn

    if isinstance(name_or_model, nn.Module):
        run = getattr(name_or_model, "run_inference", None)
        if run is not None and tag is None:  # a paperzoo train run's model: what its training did to the images
            from paperzoo.training.checkpoints import run_transforms

            return run_transforms(model_card(name_or_model.model_name).task, run)
        loaded = getattr(name_or_model, "pretrained_weights", None)
        if loaded is not None and tag is None:
            return image_preprocessing(loaded).transforms()
        name = getattr(name_or_model, "model_name", None)
        if name is None:
            raise ValueError("transforms() needs a registered name or a model built by paperzoo.create_model")
    else:
        name = name_or_model
    return image_preprocessing(get_weights(name, True if tag is None else tag)).transforms()


def describe_weights(name: str) -> str:
    """What ``paperzoo info`` shows: every published set of weights with its metric, size, licence, location and
    preprocessing, or why there is none."""
    available = published_weights(name)
    if not available:
        return f"none published: {no_weights_reason(name)}"
    lines = []
    for weights in available:
        lines.append(weights.describe())
        if weights.preprocessing is not None:
            lines.append(f"  preprocessing: {weights.preprocessing.describe()}")
    lines.append('create_model(name, pretrained=True) loads the default, pretrained="TAG" another')
    return "\n".join(lines)


def image_preprocessing(weights: PublishedWeights) -> Preprocessing:
    if weights.preprocessing is None:
        if weights.categories is None:
            raise ValueError(f"the {weights.tag} weights of {weights.model} take no images; they have no image "
                             "preprocessing")
        return Preprocessing()  # torchvision's detectors: scale to [0, 1]; they resize and normalise inside
    return weights.preprocessing


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing", "PublishedWeights", "create_pretrained",
           "describe_weights", "get_weights",
           "image_preprocessing", "no_weights_reason", "published_weights", "transforms"]
