"""Reading tensors from disk: one file, a sharded checkpoint's index, or a model folder.

Only two formats are read, both without running code: safetensors, and torch checkpoints through
``torch.load(weights_only=True)``, which refuses pickles that would call anything but tensor constructors. The
format is sniffed from the first bytes, so ``R18.PT`` or a file without a suffix is read as what it is; a
damaged file gives one ``ValueError`` that names it, not the reader library's internal error.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

StateDict = dict[str, torch.Tensor]

# What a Hugging Face (transformers or timm) model folder holds, in the order transformers itself prefers.
FOLDER_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                  "pytorch_model.bin.index.json")
SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
# Training checkpoints keep the weights beside the optimizer state under one of these keys.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")


def sniff_format(path: Path) -> str:
    """``"safetensors"``, ``"torch"`` (a zip archive, or a legacy pickle) or ``""`` (neither), from the first
    bytes: a safetensors file opens with its header's length (8 bytes, little-endian) and then the JSON ``{``."""
    with open(path, "rb") as file:
        head = file.read(9)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # zip (torch >= 1.6) or pickle protocol 2+
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    return ""


def weights_in_folder(folder: Path) -> Path:
    """The weights file of a model folder: transformers' and timm's names first, else its only weights file."""
    for name in FOLDER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(f"no weights file in the folder {folder}: expected one of {', '.join(FOLDER_WEIGHTS)}"
                                f" (or a single {', '.join(SUFFIXES)} file)")
    raise ValueError(f"the folder {folder} holds several weights files ({', '.join(p.name for p in found)}): "
                     "pass the one to load")


def read_state_dict(path: str | Path) -> StateDict:
    """Read tensors from a file (safetensors, or a torch checkpoint read with ``weights_only=True``), a sharded
    checkpoint's ``*.index.json``, or a model folder (:func:`weights_in_folder`). A training checkpoint that
    holds its weights under one of :data:`WRAPPER_KEYS` is unwrapped."""
    path = Path(path)
    if path.is_dir():
        path = weights_in_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.name.lower().endswith(".index.json"):
        return _read_shards(path)
    kind = sniff_format(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "torch":
        return _read_torch(path)
    if path.suffix.lower() in SUFFIXES:
        raise ValueError(f"{path} is damaged or not a weights file: it is neither safetensors nor a torch "
                         "checkpoint (its first bytes are neither a safetensors header nor a zip or pickle)")
    raise ValueError(f"cannot read weights from {path.name}: expected .safetensors, .pt, .pth, .bin or .ckpt "
                     "(a safetensors file or a torch checkpoint)")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _read_safetensors(path: Path) -> StateDict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors' SafetensorError (a bare Exception subclass) and OS errors
        raise ValueError(f"{path} is a damaged safetensors file: {_one_line(err)}") from None


def _read_torch(path: Path) -> StateDict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} is not a plain tensor checkpoint (torch.load with weights_only=True "
                         f"refused it; it may hide code in a pickle): {_one_line(err)}") from None
    except EOFError:  # torch's own message is empty
        raise ValueError(f"{path} is a damaged torch checkpoint: the file ends early (truncated or empty)") from None
    except (RuntimeError, OSError, ValueError) as err:  # e.g. "PytorchStreamReader failed reading zip archive"
        raise ValueError(f"{path} is a damaged torch checkpoint: {_one_line(err)}") from None
    obj = unwrap_checkpoint(obj)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(obj)


def unwrap_checkpoint(obj: object) -> object:
    """The state_dict inside a training checkpoint (``{"epoch": 3, "state_dict": {...}}``), else ``obj``."""
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    return obj


def _read_shards(index: Path) -> StateDict:
    """A sharded checkpoint: ``weight_map`` in the index names the shard of every tensor."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{index} is not a sharded checkpoint's index (no readable weight_map): "
                         f"{_one_line(err)}") from None
    state_dict: StateDict = {}
    for shard in dict.fromkeys(weight_map.values()):
        state_dict.update(read_state_dict(index.parent / shard))
    missing = sorted(weight_map.keys() - state_dict.keys())
    if missing:
        raise ValueError(f"the shards listed in {index} lack {len(missing)} of its tensors: {', '.join(missing[:5])}")
    return state_dict
