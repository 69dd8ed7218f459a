"""The model registry and the model card.

Every architecture registers one builder function per variant with ``@register(card)``. The card
(:class:`ModelCard`) is the variant's identity: the paper it comes from, the published parameter count it
must reproduce, the reference implementation it must equal, and the input one forward call takes.

``import paperzoo`` does not import any model file, nor torch. :data:`MODEL_MODULES` says which module registers
which names, so ``create_model("resnet50")`` imports ``models/classification/resnet.py`` and nothing else.
``list_models`` and ``model_card`` read the cards from ``model_index.json``, generated from what the model files
register (``python scripts/write-model-index``), so that ``paperzoo list`` and ``info`` answer without importing
a model file, torchvision or torch (each import costs seconds). ``tests/test_registry.py`` checks that
:data:`MODEL_MODULES`, the index and what the modules actually register agree, so a new model cannot be
forgotten in either.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import functools
import importlib
import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a model is built or an input made, never to read a card
    import torch
    from torch import nn

TASKS = (
    "image-classification",
    "keypoint-detection",
    "semantic-segmentation",
    "object-detection",
    "instance-segmentation",
    "sequence",
    "translation",
    "language-model",
    "masked-language-model",
    "speech",
    "generative",
)

INPUT_KINDS = ("image", "latent", "coordinates", "tokens", "token-pairs", "features", "waveform", "image-list")

# module -> the registry names it defines. The only list a new model has to be added to by hand.
MODEL_MODULES: dict[str, tuple[str, ...]] = {
    "paperzoo.models.classification.alexnet": ("alexnet",),
    "paperzoo.models.classification.vgg": (
        "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    ),
    "paperzoo.models.classification.resnet": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
    "paperzoo.models.classification.darknet": ("darknet53",),
    "paperzoo.models.classification.convnext": ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large"),
    "paperzoo.models.classification.shufflenet_v1": (
        "shufflenet_v1_g1", "shufflenet_v1_g2", "shufflenet_v1_g3", "shufflenet_v1_g4", "shufflenet_v1_g8",
        "shufflenet_v1_g1_x0_5", "shufflenet_v1_g3_x0_5", "shufflenet_v1_g8_x0_5",
    ),
    "paperzoo.models.classification.shufflenet_v2": (
        "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    ),
    "paperzoo.models.classification.densenet": ("densenet121", "densenet161", "densenet169", "densenet201"),
    "paperzoo.models.classification.squeezenet": ("squeezenet1_0", "squeezenet1_1"),
    "paperzoo.models.classification.resnext": ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"),
    "paperzoo.models.classification.regnet": (
        "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf",
        "regnet_x_32gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf",
        "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf",
    ),
    "paperzoo.models.classification.mobilenet_v2": (
        "mobilenet_v2", "mobilenet_v2_050", "mobilenet_v2_075", "mobilenet_v2_140",
    ),
    "paperzoo.models.classification.efficientnet": (
        "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
        "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    ),
    "paperzoo.models.classification.efficientnet_v2": ("efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l"),
    "paperzoo.models.classification.googlenet": ("googlenet",),
    "paperzoo.models.classification.inception_v3": ("inception_v3",),
    "paperzoo.models.classification.vision_transformer": ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"),
    "paperzoo.models.classification.swin_transformer": ("swin_t", "swin_s", "swin_b"),
    "paperzoo.models.classification.cbam": ("cbam_resnet50",),
    "paperzoo.models.classification.pyramidnet": ("pyramidnet_110_a48", "pyramidnet_272_a200", "pyramidnet_200_a300"),
    "paperzoo.models.classification.coordconv": ("coordconv_resnet50", "coordconv_classifier"),
    "paperzoo.models.classification.hrnet": (
        "hrnet_w18_small", "hrnet_w18", "hrnet_w32", "hrnet_w48", "hrnet_w64", "hrnet_w32_pose",
    ),
    "paperzoo.models.classification.nasnet": ("nasnet_a_large", "nasnet_a_mobile"),
    "paperzoo.models.classification.ghostnet": ("ghostnet", "ghostnet_050", "ghostnet_130"),
    "paperzoo.models.classification.mixnet": ("mixnet_s", "mixnet_m", "mixnet_l"),
    "paperzoo.models.classification.convnext_v2": (
        "convnextv2_atto", "convnextv2_femto", "convnextv2_pico", "convnextv2_nano", "convnextv2_tiny",
        "convnextv2_base", "convnextv2_large", "convnextv2_huge",
    ),
    "paperzoo.models.classification.senet": ("seresnet50", "senet154"),
    "paperzoo.models.classification.resnest": ("resnest50", "resnest101", "resnest200", "resnest269"),
    "paperzoo.models.classification.xception": ("xception",),
    "paperzoo.models.language.bert": (
        "bert_base", "bert_large", "bert_base_pretraining", "bert_large_pretraining", "bert_base_masked_lm",
        "bert_base_sequence_classification",
    ),
    "paperzoo.models.language.gpt": ("gpt", "gpt2", "gpt2_medium", "gpt2_large", "gpt2_xl"),
    "paperzoo.models.segmentation.unet": ("unet", "unet_padded"),
    "paperzoo.models.segmentation.fcn": (
        "fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16", "fcn_resnet50", "fcn_resnet101",
    ),
    "paperzoo.models.segmentation.deeplabv3": ("deeplabv3_resnet50", "deeplabv3_resnet101"),
    "paperzoo.models.segmentation.pspnet": ("pspnet_resnet50", "pspnet_resnet101"),
    "paperzoo.models.language.transformer": ("transformer_base", "transformer_big"),
    "paperzoo.models.generative.gan": ("gan",),
    "paperzoo.models.generative.dcgan": ("dcgan", "dcgan_ngf64"),
    "paperzoo.models.generative.vae": ("vae",),
    "paperzoo.models.generative.autoencoder": ("autoencoder",),
    "paperzoo.models.classification.capsnet": ("capsnet",),
    "paperzoo.models.classification.odenet": ("odenet", "odenet_resnet"),
    "paperzoo.models.sequence.lstm": ("lstm",),
    "paperzoo.models.sequence.gru": ("gru",),
    "paperzoo.models.sequence.seq2seq": ("seq2seq",),
    "paperzoo.models.sequence.attention_seq2seq": ("attention_seq2seq",),
    "paperzoo.models.detection.yolov3": ("yolov3",),
    "paperzoo.models.audio.wav2vec2": (
        "wav2vec2_base", "wav2vec2_large", "wav2vec2_base_pretraining", "wav2vec2_large_pretraining",
        "wav2vec2_base_ctc", "wav2vec2_large_ctc",
    ),
    "paperzoo.models.detection.ssd": ("ssd300_vgg16", "ssd512_vgg16"),
    "paperzoo.models.detection.retinanet": ("retinanet_resnet50_fpn",),
    "paperzoo.models.detection.faster_rcnn": ("fasterrcnn_resnet50_fpn",),
    "paperzoo.models.detection.mask_rcnn": ("maskrcnn_resnet50_fpn",),
}

_MODULE_OF: dict[str, str] = {name: module for module, names in MODEL_MODULES.items() for name in names}

INDEX_PATH = Path(__file__).with_name("model_index.json")


@dataclass(frozen=True)
class Paper:
    """The publication an architecture comes from."""

    title: str
    authors: str
    year: int
    url: str


class _DTypeField:
    """``InputSpec.dtype``: a ``torch.dtype``. A card read from the model index names it (``"float32"``) and it
    becomes torch's dtype where it is first read, so that reading a card does not import torch."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, spec: InputSpec | None, owner: type | None = None) -> Any:
        if spec is None:
            return "float32"  # the field's default, as the dataclass reads it
        value = spec.__dict__[self.slot]
        if isinstance(value, str):
            import torch

            value = spec.__dict__[self.slot] = getattr(torch, value)
        return value

    def __set__(self, spec: InputSpec, value: Any) -> None:
        spec.__dict__[self.slot] = value

    def name(self, spec: InputSpec) -> str:
        """``float32`` for ``torch.float32``, without importing torch."""
        value = spec.__dict__[self.slot]
        return value if isinstance(value, str) else str(value).removeprefix("torch.")


@dataclass(frozen=True)
class InputSpec:
    """What one forward call takes, so that one test and one CLI can feed every model.

    Args:
        kind: ``"image"`` (float ``[N, C, H, W]``) is the kind the classifiers use; ``"latent"`` (float
            ``[N, D]``, drawn from a standard normal) is the noise vector a generator maps to an image (a model's
            own ``sample(n)`` draws it from the model's prior); ``"coordinates"`` (float ``[N, 2]`` points in
            [-1, 1], the scale of CoordConv's coordinate channels) is the input of the CoordConv paper's
            coordinate classifier; ``"tokens"`` (int64 ids ``[N, T]`` in ``[0, vocab_size)``) feeds language
            models; ``"token-pairs"`` (a tuple ``(source [N, S], target [N, T])`` of ids, the source in
            ``[0, vocab_size)`` and the target in ``[0, target_vocab_size)``) feeds a translation model's
            teacher-forced ``forward(src, tgt)``; ``"features"`` (float ``[N, T, F]``, batch first) feeds
            recurrent layers; ``"waveform"`` (float ``[N, samples]``, mono audio) feeds speech models;
            ``"image-list"`` (a list of N float ``[C, H, W]`` images with values in [0, 1], each of its own size in
            general) feeds detectors, as torchvision's convention; ``example_input`` makes N images of ``shape``.
        shape: the shape of one example, without the batch dimension (``(3, 224, 224)``, ``(100,)``, ``(T,)``,
            ``(T, F)``; for ``"token-pairs"`` the two lengths ``(S, T)``).
        dtype: the dtype the model expects (a ``torch.dtype``, or its name: ``"float32"``).
        min_size: the smallest spatial size (H and W) the network can take; the model's own input check
            raises a ``ValueError`` below it. For a waveform, the fewest samples.
        vocab_size, target_vocab_size: the id ranges of ``"tokens"`` and ``"token-pairs"`` inputs.
        fixed_size: the network takes images of exactly ``shape``'s H and W and no other (its weights fix the
            size: a fully-connected layer on the flattened pixels, CapsNet's per-capsule transformation matrices,
            ViT's learned position embeddings); its input check refuses any other size with a ValueError.
        value_range: the range an ``"image"`` input's pixels lie in where the model defines one (a Bernoulli
            likelihood's [0, 1]); ``example_input`` then draws them uniformly from it instead of from N(0, 1).
    """

    kind: str
    shape: tuple[int, ...]
    dtype: torch.dtype = _DTypeField()  # type: ignore[assignment]
    min_size: int = 1
    vocab_size: int = 0
    target_vocab_size: int = 0
    fixed_size: bool = False
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"unknown input kind {self.kind!r}; expected one of {INPUT_KINDS}")
        if self.kind in ("tokens", "token-pairs") and self.vocab_size < 1:
            raise ValueError(f"an input of kind {self.kind!r} needs its vocab_size")
        if self.kind in ("tokens", "token-pairs") and InputSpec.__dict__["dtype"].name(self) == "float32":
            self.__dict__["_dtype"] = "int64"  # ids are integers: float32 here is only the field's default
        if self.kind == "token-pairs" and (self.target_vocab_size < 1 or len(self.shape) != 2):
            raise ValueError("a 'token-pairs' input needs target_vocab_size and shape (S, T)")

    def shape_within(self, max_image_size: int | None = None) -> tuple[int, ...]:
        """``shape``, its images scaled down to at most ``max_image_size`` pixels a side (the aspect ratio kept,
        never below ``min_size``) where the network takes any size. Other kinds, fixed-size networks and images
        no larger than that keep ``shape``: a large model's 520 or 800 pixels cost minutes on a CPU."""
        if (max_image_size is None or self.kind not in ("image", "image-list") or self.fixed_size
                or max(self.shape[1:]) <= max_image_size):
            return self.shape
        channels, height, width = self.shape
        scale = max_image_size / max(height, width)
        return (channels, max(self.min_size, round(height * scale)), max(self.min_size, round(width * scale)))

    def example_input(self, batch_size: int = 1, *, device: torch.device | str | None = None,
                      generator: torch.Generator | None = None, max_image_size: int | None = None
                      ) -> torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]:
        """A random input of the canonical shape with ``batch_size`` examples (a tuple for ``"token-pairs"``,
        to be called as ``model(*x)``; a list of images for ``"image-list"``, to be called as ``model(x)``);
        images at most ``max_image_size`` pixels a side where the network takes any size (``shape_within``)."""
        import torch

        shape = self.shape_within(max_image_size)
        if self.kind == "tokens":
            return torch.randint(0, self.vocab_size, (batch_size, *self.shape), device=device, generator=generator)
        if self.kind == "token-pairs":
            source_length, target_length = self.shape
            source = torch.randint(0, self.vocab_size, (batch_size, source_length), device=device, generator=generator)
            target = torch.randint(0, self.target_vocab_size, (batch_size, target_length), device=device,
                                   generator=generator)
            return source, target
        if self.kind == "image" and self.value_range is not None:
            low, high = self.value_range
            uniform = torch.rand((batch_size, *shape), dtype=self.dtype, device=device, generator=generator)
            return uniform * (high - low) + low
        if self.kind in ("image", "latent", "features", "waveform"):
            return torch.randn((batch_size, *shape), dtype=self.dtype, device=device, generator=generator)
        if self.kind == "image-list":  # pixel values in [0, 1], as a detector's transform expects them
            return [torch.rand(shape, dtype=self.dtype, device=device, generator=generator)
                    for _ in range(batch_size)]
        if self.kind == "coordinates":
            uniform = torch.rand((batch_size, *self.shape), dtype=self.dtype, device=device, generator=generator)
            return uniform * 2 - 1
        raise NotImplementedError(f"example_input has no factory for input kind {self.kind!r} yet")

    def describe(self) -> str:
        """Human-readable form, e.g. ``float32 (N, 3, 224, 224), H, W >= 32``."""
        dtype = InputSpec.__dict__["dtype"].name(self)
        if self.kind == "token-pairs":
            source_length, target_length = self.shape
            return (f"source int64 (N, {source_length}) ids < {self.vocab_size}, "
                    f"target int64 (N, {target_length}) ids < {self.target_vocab_size}")
        if self.kind == "image-list":
            text = f"a list of N {dtype} images ({', '.join(map(str, self.shape))})"
            text += " in [0, 1]" + (f", H, W >= {self.min_size}" if self.min_size > 1 else "")
            return text + " (any size each)"
        dims = ", ".join(["N", *map(str, self.shape)])
        if self.kind == "tokens":
            return f"int64 ({dims}) ids < {self.vocab_size}"
        text = f"{dtype} ({dims})"
        if self.value_range is not None:
            text += f" in [{self.value_range[0]:g}, {self.value_range[1]:g}]"
        if self.kind == "image" and self.fixed_size:
            text += f", H = W = {self.shape[-1]} only"
        elif self.kind == "image" and self.min_size > 1:
            text += f", H, W >= {self.min_size}"
        return text


@dataclass(frozen=True)
class TrainingRecipe:
    """How the paper trained the network, as ``paperzoo train`` applies it to a short run.

    Papers that divide the learning rate by 10 "when the error plateaus" over hundreds of thousands of steps
    are translated to a step schedule at fixed fractions of the run (``milestones``), as the ResNet paper
    itself does for CIFAR-10 (÷10 at 50% and 75% of training, §4.2). ``source`` cites the paper's section.
    """

    optimizer: str  # "sgd", "adamw" or "rmsprop"
    lr: float
    weight_decay: float
    momentum: float = 0.0
    nesterov: bool = False  # SGD with Nesterov momentum (DenseNet, PyramidNet)
    rmsprop_decay: float = 0.9  # RMSProp's moving-average decay of the squared gradient (torch's ``alpha``)
    eps: float = 1e-8  # RMSProp's (Inception v3: 1.0) and AdamW's epsilon
    schedule: str = "cosine"  # "cosine", "step", "exponential" or "linear" (to 0 at the end of the run)
    milestones: tuple[float, ...] = ()  # fractions of the run where a step schedule multiplies the lr by gamma
    gamma: float = 0.1  # the step schedule's factor, or the exponential schedule's factor every decay_every epochs
    decay_every: float = 1.0  # epochs between two exponential decays (Inception v3: 2, EfficientNet: 2.4)
    batch_size: int = 128
    warmup_epochs: int = 0  # epochs at lr × warmup_factor before the schedule starts
    warmup_factor: float = 0.1
    source: str = ""

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw", "rmsprop") or self.schedule not in (
                "cosine", "step", "exponential", "linear"):
            raise ValueError(f"unknown optimizer {self.optimizer!r} or schedule {self.schedule!r}")


# For cards whose paper gives no recipe that fits a short run: a robust modern default.
DEFAULT_RECIPE = TrainingRecipe(optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine", batch_size=64,
                                source="no recipe on the card: AdamW with cosine decay")


@dataclass(frozen=True)
class ModelCard:
    """Everything a user, a test or the docs need to know about one registered variant.

    ``params`` is the published count of this exact variant; ``params_source`` says where it comes from.
    When ``reference`` is an implementation (``torchvision.models.resnet50``, ``timm:seresnet50``) the
    built model must have exactly ``params`` parameters; when it is ``paper``, the paper's rounded figure
    to its stated precision. ``gmacs`` is measured with ``torch.utils.flop_counter`` at ``input`` on the meta device
    (``paperzoo.measure.measure_gmacs``); for a detector that is its dense network up to the first data-dependent
    step (score thresholds, NMS): transform, backbone, neck and dense heads, without the region-wise heads of
    Faster/Mask R-CNN, whose work depends on how many proposals survive.
    ``params_tolerance`` is 0 for an implementation and half the last printed digit for a paper's rounded
    figure. ``canonical`` marks the one variant that stands for its architecture: the one the contract tests
    run at full size and ``paperzoo tour`` shows. ``recipe`` is the paper's training recipe, if it gives
    one that ``paperzoo train`` can follow.
    """

    name: str
    architecture: str
    task: str
    paper: Paper
    innovations: tuple[str, ...]
    input: InputSpec
    params: int
    params_source: str
    reference: str
    gmacs: float
    canonical: bool = False
    params_tolerance: int = 0
    recipe: TrainingRecipe | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"card {self.name!r}: unknown task {self.task!r}; expected one of {TASKS}")

    def example_input(self, batch_size: int = 1, **kwargs: Any
                      ) -> torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]:
        return self.input.example_input(batch_size, **kwargs)

    def params_match(self, count: int) -> bool:
        """Whether a measured parameter count reproduces the published one: exactly, or within
        ``params_tolerance`` where only the paper's rounded figure exists (28.09M: ±5,000)."""
        return abs(count - self.params) <= self.params_tolerance


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    card: ModelCard = field(repr=False)


_REGISTRY: dict[str, _Entry] = {}


class UnknownModelError(KeyError):
    """An unknown model name. A ``KeyError`` whose message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def register(card: ModelCard) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register the decorated builder under ``card.name``, which must be the function's own name."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if builder.__name__ != card.name:
            raise ValueError(f"builder {builder.__name__!r} carries the card of {card.name!r}")
        previous = _REGISTRY.get(card.name)
        # The same file executed twice (``python -m paperzoo.models...`` runs it as __main__ and the
        # registry imports it again) is the same definition; any other clash is an error.
        if previous is not None and previous.builder.__code__.co_filename != builder.__code__.co_filename:
            raise ValueError(f"model {card.name!r} is already registered by {previous.builder.__module__}")
        _REGISTRY[card.name] = _Entry(builder, card)
        return builder

    return decorator


def _import_all() -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)


def _check_name(name: object) -> None:
    """A name that is no string: a TypeError saying so, not an AttributeError from the suggestions' str.lower."""
    if not isinstance(name, str):
        raise TypeError(f"a model name is a string such as 'resnet50' (`paperzoo list` shows them all); "
                        f"got {type(name).__name__} {name!r}")


def _entry(name: str) -> _Entry:
    _check_name(name)
    if name not in _REGISTRY and name in _MODULE_OF:
        importlib.import_module(_MODULE_OF[name])
    if name not in _REGISTRY:
        known = sorted(set(_MODULE_OF) | set(_REGISTRY))
        close = closest_names(name, known)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        family = _family(name, known)
        listing = (f"`paperzoo list '{name.lower()}*'` shows all {len(family)}" if len(family) > len(close)
                   else f"`paperzoo list` shows all {len(known)}")
        raise UnknownModelError(f"unknown model {name!r}{hint} ({listing})")
    return _REGISTRY[name]


def _typo_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) that turn ``a`` into ``b``: the optimal string
    alignment distance, which counts the usual typo, a transposition (resnet05), as one edit."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _family(name: str, known: list[str]) -> list[str]:
    """The names that ``name`` begins, in any case, shortest first (``bert``: the BERT family)."""
    return sorted((k for k in known if k.lower().startswith(name.lower())), key=lambda k: (len(k), k))


def closest_names(name: str, known: list[str], limit: int = 5) -> list[str]:
    """The registered names a mistyped or shortened ``name`` most likely meant: the names it begins (its family),
    then the closest by typos (``resnet05``: ``resnet50``)."""
    family, budget = _family(name, known), max(2, len(name) // 3)
    scored = sorted((_typo_distance(name.lower(), k.lower()), k) for k in known)
    typos = [k for distance, k in scored if distance <= budget and k not in family]
    return (family + typos)[:limit]


# timm's create_model keywords that every image classifier takes, applied by the shared base class
# (layers/classifier.py) after the model file's constructor has built the network.
CLASSIFIER_KEYWORDS = ("features_only", "out_indices", "global_pool", "drop_rate", "drop_path_rate",
                       "pretrained_cfg_overlay")


# The sizes a task's models share, with their least meaningful value. Below it torch refused deep inside the
# build (a negative dimension, a division by zero, an index out of range) or, worse, built something that looked
# fine: resnet18 with num_classes=-1 had no classifier and said num_classes=-1 (found in issue 26). An image
# classifier takes 0, timm's "no classifier: the pooled features out". A model that does not take the keyword
# still refuses it with its own TypeError; BERT's sequence classifier checks its num_classes itself.
_LEAST_SIZES: dict[str, dict[str, int]] = {
    "image-classification": {"num_classes": 0, "in_chans": 1},
    "keypoint-detection": {"in_chans": 1},
    "semantic-segmentation": {"num_classes": 1, "in_chans": 1},
    "object-detection": {"num_classes": 1},
    "instance-segmentation": {"num_classes": 1},
}


def _check_sizes(name: str, kwargs: dict[str, Any]) -> None:
    """A one-line ValueError for a ``num_classes`` or ``in_chans`` that no model of the variant's task can have."""
    card = model_card(name)
    # CoordConv's coordinate classifier takes neither keyword (its TypeError says so)
    classifies_images = card.task != "image-classification" or card.input.kind == "image"
    least = _LEAST_SIZES.get(card.task, {}) if classifies_images else {}
    for keyword, minimum in least.items():
        value = kwargs.get(keyword)
        if value is None:
            continue
        try:
            count = operator.index(value)  # an int, or numpy's
        except TypeError:
            count = None
        if isinstance(value, bool) or count is None or count < minimum:
            zero = ", or 0 for no classifier (the pooled features out, as in timm)" if minimum == 0 else ""
            raise ValueError(f"{name}: {keyword} must be a positive integer{zero}; got {value!r}")


def _checked_placement(device: Any, dtype: Any) -> tuple[Any, Any]:
    """``device`` and ``dtype`` as torch objects (a dtype may be named, as a config.json writes it: "float32"),
    or a one-line ValueError instead of torch's RuntimeError or an AttributeError."""
    import torch

    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device={device!r}: expected a torch device such as 'cpu', 'cuda', 'cuda:1' or "
                             "'meta'") from None
        if device.type == "cuda" and not torch.cuda.is_available():  # torch's "Found no NVIDIA driver", mid-build
            raise ValueError(f"device={str(device)!r}: this machine has no CUDA GPU that torch can use; use 'cpu', or "
                             "'meta' for the structure only")
    if dtype is not None:
        named = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else dtype
        if not (isinstance(named, torch.dtype) and named.is_floating_point):
            raise ValueError(f"dtype={dtype!r}: expected a floating-point dtype such as torch.float32, "
                             "torch.bfloat16 or its name 'float32'")
        dtype = named
    return device, dtype


def create_model(name: str, pretrained: bool | str = False, *, device: Any = None, dtype: Any = None,
                 **kwargs: Any) -> nn.Module:
    """Build the registered variant ``name``; ``kwargs`` go to its constructor (``num_classes``,
    ``in_chans``, ...); a variant whose reference is a transformers class also takes its configuration's names
    (``num_hidden_layers=6``, a ``config.json``'s contents). ``pretrained=True`` loads the reference's default
    published weights, a tag (``"IMAGENET1K_V1"``) others (:mod:`paperzoo.weights`). ``device`` and ``dtype``
    place the model where it is built (``device="meta"``: the structure only, nothing allocated), as timm.

    Image classifiers also take timm's keywords: ``features_only`` with ``out_indices`` (a backbone returning
    the maps of those feature levels), ``global_pool`` (``"avg"``, ``"max"``, ``"avgmax"``, ``""``: none),
    ``drop_rate`` (dropout before the classifier), ``drop_path_rate`` (stochastic depth, where the
    architecture has it) and ``pretrained_cfg_overlay`` (entries that replace the model's ``pretrained_cfg``,
    e.g. another ``input_size``). Every model takes timm's ``checkpoint_path``: a local weights file loaded
    after the build (:func:`paperzoo.load_weights`, strict)."""
    import torch

    device, dtype = _checked_placement(device, dtype)
    _check_sizes(name, kwargs)
    checkpoint_path = kwargs.pop("checkpoint_path", None)
    if checkpoint_path is not None:
        if device is not None and device.type == "meta":
            raise ValueError("checkpoint_path with device='meta': the meta device holds no values to load into; "
                             "build on 'cpu' or 'cuda'")
        # timm's keyword: a local file of weights, loaded after the build (and over pretrained ones), in any
        # layout load_weights reads (ours, the reference's, a training checkpoint's "state_dict", "module." prefixes)
        from paperzoo.interop import load_weights

        # a backbone (features_only) is made after the load, from the whole network the file holds
        backbone = ({k: kwargs.pop(k) for k in ("features_only", "out_indices") if k in kwargs}
                    if kwargs.get("features_only") else {})
        model = load_weights(create_model(name, pretrained, device=device, dtype=dtype, **kwargs), checkpoint_path)
        if backbone:
            model.as_backbone(backbone.get("out_indices"))
        return model
    if pretrained:
        from paperzoo.weights import create_pretrained  # downloads and converters: only when weights are asked for

        model = create_pretrained(name, pretrained, **kwargs)
        return model.to(device=device, dtype=dtype) if device is not None or dtype is not None else model
    generic = {key: kwargs.pop(key) for key in CLASSIFIER_KEYWORDS if key in kwargs}
    entry = _entry(name)
    if generic and (entry.card.task != "image-classification" or entry.card.input.kind != "image"):
        # CoordConv's coordinate classifier is of the classification task but reads coordinates, not images: it
        # has no feature maps, pooling or head to set (these keywords ended in an AttributeError until issue 26)
        what = (f"classifies {entry.card.input.kind}, not images" if entry.card.task == "image-classification"
                else "is not an image classifier")
        raise TypeError(f"{name} {what}; {', '.join(generic)} apply to image classifiers only")
    if kwargs and entry.card.reference.startswith("transformers:"):
        # the reference's configuration names (BertConfig's num_hidden_layers) → ours (num_layers)
        from paperzoo.interop.huggingface import our_keywords

        kwargs = our_keywords(name, kwargs)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = entry.builder(**kwargs)
    model.model_name = name  # read by the shared input check, so its errors name the variant
    if dtype is not None:
        model.to(dtype=dtype)
    if generic:
        if generic.get("pretrained_cfg_overlay"):
            # dict.items: the stored values, without measuring the feature map's size at the replaced input size
            model.pretrained_cfg = {**dict(dict.items(model.pretrained_cfg)), **generic["pretrained_cfg_overlay"]}
        if "global_pool" in generic:
            model.set_global_pool(generic["global_pool"])
        if generic.get("drop_rate") is not None:
            model.set_drop_rate(generic["drop_rate"])
        if generic.get("drop_path_rate") is not None:
            model.set_drop_path_rate(generic["drop_path_rate"])
        if generic.get("features_only"):
            model.as_backbone(generic.get("out_indices"))
        elif "out_indices" in generic:
            raise TypeError("out_indices applies with features_only=True; leave it out otherwise")
    return model


def model_card(name: str) -> ModelCard:
    """The card of a registered variant: from the model index, without importing its model file, until that file
    is imported and registers it (the two cards are equal: ``tests/test_registry.py``)."""
    _check_name(name)
    if name not in _REGISTRY and name in _index():
        return _indexed_card(name)
    return _entry(name).card


def model_module(name: str) -> str:
    """The module that defines the variant ``name``, without importing it (a variant registered from outside
    :data:`MODEL_MODULES`: its builder's module)."""
    return _MODULE_OF[name] if name in _MODULE_OF else model_builder(name).__module__


def model_builder(name: str) -> Callable[..., nn.Module]:
    """The registered builder function (its module is where the variant lives)."""
    return _entry(name).builder


def list_models(pattern: str = "*", task: str | None = None, *, canonical_only: bool = False) -> list[str]:
    """Registered names matching a shell wildcard ``pattern``, optionally of one ``task``, sorted."""
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    names = sorted(n for n in set(_MODULE_OF) | set(_REGISTRY) if fnmatch.fnmatchcase(n, pattern))
    if task is not None:
        names = [n for n in names if model_card(n).task == task]
    if canonical_only:
        names = [n for n in names if model_card(n).canonical]
    return names


def parse_reference(reference: str) -> tuple[str, str, dict]:
    """Split a card's ``reference`` into (library, constructor name, keyword arguments).

    ``torchvision.models.googlenet(aux_logits=False)`` → ("torchvision", "googlenet", {"aux_logits": False});
    ``timm:seresnet50`` → ("timm", "seresnet50", {}); ``torch.nn.LSTM(input_size=8, hidden_size=16)`` →
    ("torch.nn", "LSTM", {"input_size": 8, "hidden_size": 16}); ``transformers:BertModel(hidden_size=1024)`` →
    ("transformers", "BertModel", {"hidden_size": 1024}). The keyword values are Python literals. A torchvision
    submodule (``torchvision.models.segmentation.fcn_resnet50``) is dropped: ``get_model`` knows every builder by
    its name alone. ``paper`` (no implementation) gives ("paper", "", {}).
    """
    if reference.startswith("torchvision.models."):
        library, call = "torchvision", reference.removeprefix("torchvision.models.")
    elif reference.startswith("torch.nn."):
        library, call = "torch.nn", reference.removeprefix("torch.nn.")
    elif ":" in reference:
        library, call = reference.split(":", 1)
    else:
        return reference, "", {}
    parsed = ast.parse(call if "(" in call else call + "()", mode="eval").body
    if not (isinstance(parsed, ast.Call) and isinstance(parsed.func, (ast.Name, ast.Attribute))):
        raise ValueError(f"unreadable reference {reference!r}")
    name = parsed.func.id if isinstance(parsed.func, ast.Name) else parsed.func.attr
    return library, name, {kw.arg: ast.literal_eval(kw.value) for kw in parsed.keywords}


def registered_in(module: str) -> list[str]:
    """Names that ``module`` actually registered (imports it); used to check :data:`MODEL_MODULES`."""
    importlib.import_module(module)
    return sorted(n for n, e in _REGISTRY.items() if e.builder.__module__ == module)


@functools.cache
def _index() -> dict[str, dict[str, Any]]:
    """The committed model index: every card of :data:`MODEL_MODULES` as JSON, by name."""
    return json.loads(INDEX_PATH.read_text(encoding="utf-8"))["cards"]


@functools.cache
def _indexed_card(name: str) -> ModelCard:
    def tuples(values: dict[str, Any]) -> dict[str, Any]:  # JSON has lists where the cards have tuples
        return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}

    nested = {"paper": Paper, "input": InputSpec, "recipe": TrainingRecipe}
    card = {k: nested[k](**tuples(v)) if isinstance(v, dict) else v for k, v in _index()[name].items()}
    return ModelCard(**tuples(card))


def index_text() -> str:
    """``model_index.json`` as the cards registered now make it (imports every model file and torch):
    ``python scripts/write-model-index`` writes it, ``tests/test_registry.py`` compares it with the committed one."""
    import torch

    def plain(value: Any) -> Any:
        if is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else value

    _import_all()
    cards = {name: plain(_REGISTRY[name].card) for name in sorted(_MODULE_OF)}
    about = ("Generated from the cards that the model files register by `python scripts/write-model-index`, "
             "so that reading a card imports no model file; tests/test_registry.py checks that it is current.")
    # One card a line: a changed card is a one-line diff.
    lines = [f"{json.dumps(name)}: {json.dumps(card, ensure_ascii=False)}" for name, card in cards.items()]
    return f'{{"about": {json.dumps(about)},\n "cards": {{\n' + ",\n".join(lines) + "\n}}\n"
