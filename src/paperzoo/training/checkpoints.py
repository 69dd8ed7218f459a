"""Checkpoints that survive an interruption and never execute a pickle.

A checkpoint holds everything a run needs to continue as if it had never stopped: the model, the optimizer
and the scheduler, the random number generators' states, the number of finished epochs and the metrics so
far. It is written to a temporary file and renamed over the old one (``os.replace`` is atomic), so a run
killed while saving leaves the previous checkpoint intact. It is read with ``torch.load(weights_only=True)``.
A sharded run (``--shard``) writes a folder instead: :mod:`paperzoo.training.sharding`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

FORMAT = "paperzoo-checkpoint"
VERSION = 2  # 2: optimizers and schedules as lists, the run's settings and environment


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)``, flush it to disk, then rename it over ``path`` in one step."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, "version": VERSION, **state}, tmp))


def load_checkpoint(path: str | Path, model_name: str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` for ``model_name``; anything else is a clear
    ``ValueError``: a missing, corrupt or foreign file, or one that would need to run code to load."""
    from paperzoo.training.sharding import STATE, checkpoint_folder

    path = Path(path)
    folder = checkpoint_folder(path)  # a sharded checkpoint (--shard) is a folder
    file = folder / STATE if folder.is_dir() else path
    if folder.is_dir() and not file.is_file():
        raise ValueError(f"checkpoint {path} is a folder without {STATE}: not a sharded paperzoo checkpoint "
                         "(paperzoo train --shard writes RUN/checkpoint)")
    if not file.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"checkpoint {path} holds objects other than tensors and plain data (refused by "
                         f"torch.load(weights_only=True)): {str(err).splitlines()[0]}") from None
    except Exception as err:  # truncated or not a torch file at all
        raise ValueError(f"checkpoint {path} is corrupt or not a PyTorch file: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a paperzoo training checkpoint (a plain state_dict loads with "
                         "paperzoo.load_weights instead)")
    if state.get("version") != VERSION:
        raise ValueError(f"checkpoint {path} has format version {state.get('version')}, expected {VERSION}")
    if state.get("model_name") != model_name:
        raise ValueError(f"checkpoint {path} is for {state.get('model_name')!r}, not {model_name!r}")
    return state


def load_trained(run: str | Path, model_name: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model a ``paperzoo train`` run left (of an image task, a CTC model or a generative model), in eval
    mode, and its config.json's "inference" entry (how training fed it, what its outputs are called): ``run`` is
    the run's folder or a file in it. The weights are its model.safetensors (a finished run), else its last
    checkpoint.pt."""
    import json

    from paperzoo.registry import create_model

    folder = Path(run)
    folder = folder.parent if folder.is_file() else folder
    if not (folder / "config.json").is_file():
        raise ValueError(f"--checkpoint {run}: no config.json in {folder}; give the folder of a paperzoo train run "
                         f"(runs/{model_name} by default)")
    config = json.loads((folder / "config.json").read_text())
    if config.get("model") != model_name:
        raise ValueError(f"--checkpoint {run} holds a run of {config.get('model')!r}, not {model_name!r}")
    inference = config.get("inference")
    if not inference:
        raise ValueError(f"--checkpoint {run}: its config.json has no \"inference\" entry (how to feed the model): "
                         "a run of a task that paperzoo predict, transcribe and sample do not take, or of an earlier "
                         "paperzoo")
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        weights = load_file(str(folder / "model.safetensors"))
    elif (folder / "checkpoint.pt").is_file():
        weights = load_checkpoint(folder / "checkpoint.pt", model_name)["model"]
    else:
        raise ValueError(f"--checkpoint {run}: no model.safetensors or checkpoint.pt in {folder} (a --shard run "
                         "writes model.safetensors when it finishes)")
    # JSON made the keywords' tuples (stage widths, ...) lists
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in inference["model_kwargs"].items()}
    model = create_model(model_name, **kwargs)
    model.load_state_dict(weights)
    model.run_inference = inference  # paperzoo.transforms(model): the run's preprocessing, not the published one's
    if "channels" in inference:  # a classifier: timm's pretrained_cfg (resolve_data_config) describes the run too
        size, channels = inference["image_size"], inference["channels"]
        model.pretrained_cfg = {**dict(dict.items(model.pretrained_cfg)), "tag": None, "source": "paperzoo train",
                                "url": "", "hf_hub_id": "", "input_size": (channels, size, size),
                                "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "squash",
                                "mean": tuple(inference["mean"] or (0.0,) * channels),
                                "std": tuple(inference["std"] or (1.0,) * channels),
                                "num_classes": len(inference["classes"]), "label_names": list(inference["classes"])}
    return model.eval(), inference


def run_transforms(task: str, inference: dict[str, Any]) -> Any:
    """The ``torchvision.transforms.v2`` pipeline through which a ``paperzoo train`` run of ``task`` gave its
    model each image (a PIL image in; config.json's "inference" says how): bit for bit what training did."""
    from paperzoo.training import data, segmentation_data

    if task == "image-classification":
        normalize = (inference["mean"], inference["std"]) if inference.get("mean") else None
        return data.image_transform(inference["image_size"], inference["channels"], normalize)
    if task == "semantic-segmentation":
        return segmentation_data.image_transform(inference["image_size"])
    if task not in ("object-detection", "instance-segmentation"):
        raise ValueError(f"the model of a {task} run takes no photographs to preprocess")
    from torchvision.transforms import v2

    return v2.Compose([*data.to_unit_range(), v2.ToPureTensor()])  # a detector resizes the images itself


def rng_state() -> dict[str, Any]:
    """The generators a training step draws from (dropout, stochastic depth); data order has its own."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
