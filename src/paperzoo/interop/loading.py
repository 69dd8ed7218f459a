"""Loading weights (the functions :mod:`paperzoo.interop` exports): our own files, and the state_dicts of the
reference implementations, converted; see the package's docstring."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from paperzoo.interop.files import read_state_dict, unwrap_checkpoint

SOURCES = ("paperzoo", "torch", "torchvision", "timm", "transformers")

StateDict = dict[str, torch.Tensor]
Converter = Callable[[StateDict, nn.Module], StateDict]


class WeightsMismatchError(ValueError):
    """The (converted) state_dict does not fit the model: names what is missing, extra, or mis-shaped."""


def converter_for(model: nn.Module, source: str) -> Converter | None:
    """The converter from ``source``'s layout to ``model``'s, or ``None`` where the names are already ours."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if source == "paperzoo":
        return None
    module = "torch_nn" if source == "torch" else source  # interop/torch_nn.py: the torch.nn classes it renames
    converters: dict[str, Converter] = importlib.import_module(f"paperzoo.interop.{module}").CONVERTERS
    kind = type(model).__name__
    if kind not in converters:
        if source == "torch":  # torch.nn's own names, which our layers keep unless a converter says otherwise
            return None
        raise ValueError(f"no {source} converter for {kind}; {source} converters exist for: "
                         f"{', '.join(sorted(converters)) or 'none yet'}")
    return converters[kind]


def convert_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> StateDict:
    """Rename ``state_dict`` from the ``source`` library's layout to ``model``'s."""
    converter = converter_for(model, source)
    return dict(state_dict) if converter is None else converter(dict(state_dict), model)


# Wrappers that training code puts around a model's own names: DistributedDataParallel's ``module.``,
# torch.compile's ``_orig_mod.``, Lightning's and many trainers' ``model.``, a detector's or segmenter's
# ``backbone.``, transformers' task models' ``bert.``. Removed only where that makes the weights fit better.
PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "bert.")


class LoadResult(NamedTuple):
    """What ``load_weights(..., strict=False)`` left out: the model's keys the weights lack (they keep their
    initialisation) and the weights' keys the model lacks (ignored). Named as torch's ``load_state_dict`` result."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Fit(NamedTuple):
    """How one reading of the weights (a prefix removed, a source's layout) fits the model."""

    source: str
    prefix: str
    state_dict: StateDict
    missing: list[str]
    unexpected: list[str]
    conflicts: list[str]

    @property
    def matched(self) -> int:
        return len(self.state_dict) - len(self.unexpected) - len(self.conflicts)

    @property
    def perfect(self) -> bool:
        return not (self.missing or self.unexpected or self.conflicts)


def fit(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, prefix: str = "") -> Fit:
    """Convert ``state_dict`` from ``source``'s layout and compare its names and shapes with ``model``'s."""
    converted = convert_state_dict(model, state_dict, source)
    own = model.state_dict()
    return Fit(source, prefix, converted, sorted(own.keys() - converted.keys()), sorted(converted.keys() - own.keys()),
               [f"{k}: weights {tuple(converted[k].shape)}, model {tuple(own[k].shape)}"
                for k in own if k in converted and converted[k].shape != own[k].shape])


def _unwrapped(state_dict: StateDict) -> list[tuple[str, StateDict]]:
    """``state_dict`` with every combination of :data:`PREFIXES` that its keys carry removed (``module.model.``
    too); keys without the prefix stay as they are."""
    readings, seen = [("", state_dict)], {""}
    for removed, current in readings:  # grows while it is read: nested prefixes
        for prefix in PREFIXES:
            name = removed + prefix
            if name not in seen and name.count(".") <= 3 and any(k.startswith(prefix) for k in current):
                seen.add(name)
                readings.append((name, {k.removeprefix(prefix): v for k, v in current.items()}))
    return readings


def candidate_sources(model: nn.Module) -> list[str]:
    """The layouts ``source="auto"`` tries for ``model``: ours, then the library its card names as its
    reference, then every other library with a converter for its class."""
    from paperzoo.interop.references import WEIGHT_SOURCES, parse_reference
    from paperzoo.registry import model_card

    order = ["paperzoo"]
    try:
        order.append(WEIGHT_SOURCES[parse_reference(model_card(model.model_name).reference)[0]])
    except (AttributeError, KeyError, ValueError):  # not built through create_model, or a paper-only reference
        pass
    kind = type(model).__name__
    for source in SOURCES[1:]:
        module = "torch_nn" if source == "torch" else source
        if kind in importlib.import_module(f"paperzoo.interop.{module}").CONVERTERS:
            order.append(source)
    return list(dict.fromkeys(order))


def best_fit(model: nn.Module, state_dict: StateDict, sources: list[str]) -> Fit:
    """The reading of ``state_dict`` (prefix removed, source layout) that fits ``model`` best: a perfect one
    if any, else the one matching the most tensors (then the fewest unexpected keys)."""
    best: Fit | None = None
    refusal: Exception | None = None  # why the source's converter refused the weights as given
    # A model that keeps its weights under a submodule (BERTPreTraining's ``bert.``) also reads that submodule's
    # weights alone, the prefix added: an encoder checkpoint then starts the model with heads (strict=False).
    nested = [(f"+{name}.", {f"{name}.{k}": v for k, v in state_dict.items()})
              for name, child in model.named_children() if next(child.parameters(), None) is not None]
    for prefix, reading in _unwrapped(state_dict) + nested:
        for source in sources:
            try:
                candidate = fit(model, reading, source, prefix)
            except (ValueError, KeyError, IndexError, RuntimeError) as err:  # a converter refusing this reading
                if prefix == "" and refusal is None:
                    refusal = err
                continue
            if candidate.perfect:
                return candidate
            if best is None or (candidate.matched, -len(candidate.unexpected)) > (best.matched, -len(best.unexpected)):
                best = candidate
    if refusal is not None and len(sources) == 1:  # one source named: its converter's reason is the answer
        raise refusal
    if best is None:  # every converter refused: report the plain reading in the first layout
        return fit(model, state_dict, sources[0]) if sources[0] == "paperzoo" else fit(model, state_dict, "paperzoo")
    return best


def load_weights(model: nn.Module, weights: str | Path | Mapping[str, torch.Tensor] | nn.Module,
                 source: str = "auto", *, strict: bool = True, assign: bool = False) -> nn.Module | LoadResult:
    """Load ``weights`` into ``model``: a path (a file, a sharded checkpoint's index, or a model folder), a
    state_dict, or a reference ``nn.Module``.

    ``source`` names the layout of the weights (``"paperzoo"``, ``"torch"``, ``"torchvision"``, ``"timm"``,
    ``"transformers"``); ``"auto"`` tries ours, then the model's reference library, then every library with a
    converter for the model, and takes the one that fits. Wrapping prefixes (:data:`PREFIXES`) and a
    checkpoint's ``state_dict`` key are removed where that makes the weights fit.

    ``strict=True`` (the default): every parameter and buffer must be matched by name and shape, else a
    :class:`WeightsMismatchError` says what is missing, extra or mis-shaped, and which registered variant or
    constructor arguments would fit; returns ``model``. ``strict=False``: loads what matches (shapes must
    still agree) and returns a :class:`LoadResult` of the missing and unexpected keys, so an encoder's weights
    start a model with new heads. ``assign=True`` puts the given tensors in place of the model's own (a model
    built on the meta device then needs no initialisation).
    """
    if source != "auto" and source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected 'auto' or one of {', '.join(SOURCES)}")
    if isinstance(weights, nn.Module):
        state_dict = weights.state_dict()
    elif isinstance(weights, (str, Path)):
        state_dict = read_state_dict(weights)
    else:
        state_dict = dict(unwrap_checkpoint(weights))
    if source == "auto":
        found = best_fit(model, state_dict, candidate_sources(model))
    else:
        converter_for(model, source)  # a missing converter is named before any fitting
        found = best_fit(model, state_dict, [source])
    if found.conflicts or (strict and not found.perfect) or found.matched == 0:
        from paperzoo.interop.hints import mismatch_message

        raise WeightsMismatchError(mismatch_message(model, state_dict, found, explicit_source=source != "auto"))
    model.load_state_dict({k: v for k, v in found.state_dict.items() if k not in found.unexpected},
                          strict=strict, assign=assign)
    return model if strict else LoadResult(found.missing, found.unexpected)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], limit: int = 20) -> None:
    """Raise :class:`WeightsMismatchError` unless ``state_dict`` matches ``model``'s names and shapes."""
    found = fit(model, state_dict, "paperzoo")
    if not found.perfect:
        from paperzoo.interop.hints import mismatch_lines

        raise WeightsMismatchError("\n  ".join([f"the weights do not fit {type(model).__name__}",
                                                *mismatch_lines(found, limit)]))


__all__ = ["PREFIXES", "SOURCES", "LoadResult", "WeightsMismatchError", "check_state_dict", "convert_state_dict",
           "load_weights", "read_state_dict"]
