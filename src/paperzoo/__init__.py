"""paperzoo: fifty landmark neural networks, each readable like its paper and proven equal to its reference.

The whole public API::

    create_model(name, **kwargs)   build a registered variant; pretrained=True | "TAG" loads published weights
    transforms(name_or_model, tag) the preprocessing those weights were evaluated with
    list_models(pattern, task)     the registered names
    model_card(name)               what a variant is: paper, published parameters, reference, input
    load_weights(model, weights)   load weights (ours or a reference implementation's) into a model
    from_pretrained(path_or_id)    build and load a Hugging Face (transformers or timm) model folder or Hub id
    tokenizer(path_or_id)          the tokenizer of such a folder (the tokenizers library)
    export_weights(model, library) our weights in torchvision's, timm's or transformers' layout
    save_pretrained(model, folder) a folder that transformers / timm (and from_pretrained) load
    train(name, **settings)        `paperzoo train` in one call: the run's files, and its summary returned

``import paperzoo`` imports no model file; each loads the first time one of its models is built. Nor does it import
torch, which ``load_weights``, ``count_parameters`` and building a model bring in (1.5 s and more): the model
cards are plain data, so ``paperzoo list`` answers at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from paperzoo.registry import InputSpec, ModelCard, Paper, create_model, list_models, model_card

if TYPE_CHECKING:
    from paperzoo.interop import load_weights
    from paperzoo.interop.export import export_weights, save_pretrained
    from paperzoo.interop.huggingface import from_pretrained, tokenizer
    from paperzoo.measure import count_parameters
    from paperzoo.training import train
    from paperzoo.weights import transforms

__version__ = "0.1.0"

# What needs torch, imported on first use: the functions, and the modules as ``paperzoo.interop`` finds them.
_LAZY = {"load_weights": "paperzoo.interop", "count_parameters": "paperzoo.measure", "transforms": "paperzoo.weights",
         "export_weights": "paperzoo.interop.export", "save_pretrained": "paperzoo.interop.export",
         "from_pretrained": "paperzoo.interop.huggingface", "tokenizer": "paperzoo.interop.huggingface",
         "train": "paperzoo.training",
         "interop": "paperzoo.interop", "measure": "paperzoo.measure"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'paperzoo' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    return module if module.__name__ == f"paperzoo.{name}" else getattr(module, name)


__all__ = [
    "InputSpec",
    "ModelCard",
    "Paper",
    "count_parameters",
    "create_model",
    "export_weights",
    "from_pretrained",
    "list_models",
    "load_weights",
    "model_card",
    "save_pretrained",
    "tokenizer",
    "train",
    "transforms",
]
