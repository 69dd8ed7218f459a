"""paperzoo: fifty landmark neural networks, each readable like its paper and proven equal to its reference.

The whole public API::

    create_model(name, **kwargs)   build a registered variant; pretrained=True | "TAG" loads published weights
    transforms(name_or_model, tag) the preprocessing those weights were evaluated with
    list_models(pattern, task)     the registered names
    model_card(name)               what a variant is: paper, published parameters, reference, input
    load_weights(model, source)    load a reference implementation's weights into ours

``import paperzoo`` imports no model file; each loads the first time one of its names is asked for.
"""

from paperzoo.interop import load_weights
from paperzoo.measure import count_parameters
from paperzoo.registry import InputSpec, ModelCard, Paper, create_model, list_models, model_card
from paperzoo.weights import transforms

__version__ = "0.1.0"

__all__ = [
    "InputSpec",
    "ModelCard",
    "Paper",
    "count_parameters",
    "create_model",
    "list_models",
    "load_weights",
    "model_card",
    "transforms",
]
