"""paperzoo: fifty landmark neural networks, each readable like its paper and proven equal to its reference.

The whole public API::

    create_model(name, **kwargs)   build a registered variant
    list_models(pattern, task)     the registered names
    model_card(name)               what a variant is: paper, published parameters, reference, input
    load_weights(model, weights)   load weights (ours or a reference implementation's) into a model
    from_pretrained(path_or_id)    build and load a Hugging Face (transformers or timm) model folder or Hub id
    tokenizer(path_or_id)          the tokenizer of such a folder (the tokenizers library)
    export_weights(model, library) our weights in torchvision's, timm's or transformers' layout
    save_pretrained(model, folder) a folder that transformers / timm (and from_pretrained) load

``import paperzoo`` imports no model file; each loads the first time one of its names is asked for.
"""

from paperzoo.interop import load_weights
from paperzoo.interop.export import export_weights, save_pretrained
from paperzoo.interop.huggingface import from_pretrained, tokenizer
from paperzoo.measure import count_parameters
from paperzoo.registry import InputSpec, ModelCard, Paper, create_model, list_models, model_card

__version__ = "0.1.0"

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
]
