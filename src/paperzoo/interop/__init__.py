"""Loading weights: our own files, and the state_dicts of the reference implementations, converted.

``load_weights(model, weights, source=...)`` takes a path (``.safetensors``, or ``.pt``/``.pth``/``.bin``
read with ``torch.load(weights_only=True)``: never an unrestricted pickle), a state_dict, or a reference
``nn.Module``; converts its keys from the ``source`` library's layout to ours with the converter that
``interop/<source>.py`` registers for the model's class (for ``source="torch"``: ``interop/torch_nn.py``, and
a class it does not list keeps torch.nn's names as they are); and loads the result strictly. A mismatch raises a
:class:`WeightsMismatchError` that lists the missing keys, the unexpected keys and the shape conflicts.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

SOURCES = ("paperzoo", "torch", "torchvision", "timm", "transformers")

StateDict = dict[str, torch.Tensor]
Converter = Callable[[StateDict, nn.Module], StateDict]


class WeightsMismatchError(ValueError):
    """The (converted) state_dict does not fit the model: names what is missing, extra, or mis-shaped."""


def read_state_dict(path: str | Path) -> StateDict:
    """Read tensors from a ``.safetensors`` file, or a ``.pt``/``.pth``/``.bin`` file with
    ``torch.load(weights_only=True)``, which refuses to run code hidden in a pickle. A checkpoint that holds
    its weights under ``"state_dict"`` or ``"model"`` is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix not in (".pt", ".pth", ".bin", ".ckpt"):
        raise ValueError(f"cannot read weights from {path.name}: expected .safetensors, .pt, .pth, .bin or .ckpt")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} is not a plain tensor checkpoint (torch.load with weights_only=True "
                         f"refused it; it may hide code in a pickle): {err}") from None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(obj)


def convert_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> StateDict:
    """Rename ``state_dict`` from the ``source`` library's layout to ``model``'s."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    state_dict = dict(state_dict)
    if source == "paperzoo":
        return state_dict
    module = "torch_nn" if source == "torch" else source  # interop/torch_nn.py: the torch.nn classes it renames
    converters: dict[str, Converter] = importlib.import_module(f"paperzoo.interop.{module}").CONVERTERS
    kind = type(model).__name__
    if kind not in converters:
        if source == "torch":  # torch.nn's own names, which our layers keep unless a converter says otherwise
            return state_dict
        raise ValueError(f"no {source} converter for {kind}; {source} converters exist for: "
                         f"{', '.join(sorted(converters)) or 'none yet'}")
    return converters[kind](state_dict, model)


def load_weights(model: nn.Module, weights: str | Path | Mapping[str, torch.Tensor] | nn.Module,
                 source: str = "paperzoo", *, assign: bool = False) -> nn.Module:
    """Load ``weights`` (a path, a state_dict or a reference module) from ``source``'s layout into ``model``.

    Strict: every parameter and buffer must be matched, by name and by shape. ``assign=True`` puts the given
    tensors in place of the model's own (a model built on the meta device then needs no initialisation).
    Returns ``model``.
    """
    if isinstance(weights, nn.Module):
        state_dict = weights.state_dict()
    elif isinstance(weights, (str, Path)):
        state_dict = read_state_dict(weights)
    else:
        state_dict = dict(weights)
    converted = convert_state_dict(model, state_dict, source)
    check_state_dict(model, converted)
    model.load_state_dict(converted, strict=True, assign=assign)
    return model


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], limit: int = 20) -> None:
    """Raise :class:`WeightsMismatchError` unless ``state_dict`` matches ``model``'s names and shapes."""
    own = model.state_dict()
    missing = sorted(own.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - own.keys())
    conflicts = [f"{k}: weights {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)}"
                 for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if not (missing or unexpected or conflicts):
        return
    parts = [f"the weights do not fit {type(model).__name__}"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape conflicts", conflicts)):
        if items:
            more = f" … and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {title}: {', '.join(items[:limit])}{more}")
    raise WeightsMismatchError("\n  ".join(parts))


__all__ = ["SOURCES", "WeightsMismatchError", "check_state_dict", "convert_state_dict", "load_weights",
           "read_state_dict"]
