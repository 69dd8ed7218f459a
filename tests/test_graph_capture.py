"""Graph capture over the registry's image classifiers (issue 21, item 3): torch.fx's symbolic trace, torchvision's
``create_feature_extractor`` (built on it) and ``torch.export`` with a dynamic batch.

Which models, which checks:
(a) every canonical classifier, with real weights (redrawn by ``randomize_weights`` so that every layer shapes the
    output) on a small input: the graph ``torch.fx.symbolic_trace`` captures gives the eager logits; and
    ``create_feature_extractor`` (which traces the model in training and in eval mode), asked for two top-level
    submodules by name as torchvision's documentation does, returns exactly those two, each equal to what a forward
    hook on that submodule records in the eager pass (an expected value that does not go through fx);
(b) every other classifier, on the meta device (no weights to build or draw, no arithmetic): the symbolic trace
    captures the whole forward, and the traced graph gives logits of the right shape (the variants of a file share
    its code, which (a) checks with numbers);
(c) the input checks skip themselves only on fx's symbolic input: in eager mode and under ``torch.export`` (whose
    fake tensors have shapes) a bad input still raises the ValueError that names the expected shape.

torch.export. tests/test_export.py already exports one variant per model file (each canonical classifier, the deep
ones with fewer units of the same kinds) with ``Dim("batch")`` and checks the program's outputs at batch 2 and 3
against eager (its check ``export``, about 2 CPU seconds a model); repeating that here would double the cost. Here
(d): a test that every canonical classifier is exported there. (Until issue 26, test_export replaced hrnet_w32 and
nasnet_a_large by hrnet_w18_small and nasnet_a_mobile, and this file exported those two at full depth on the meta
device: 19 s.)

Cost, measured on the 2-core machine while it ran about 15 other processes (so inflated): 178 tests, 98 s of user
CPU time on one thread (9 min 55 s of wall time at that load), 19 s of which went with (d)'s two exports.
"""

from __future__ import annotations

import functools
import inspect

import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor

import paperzoo
from conftest import assert_close_rel, assert_output_depends_on_input, randomize_weights
from paperzoo.registry import model_builder

CLASSIFIERS = paperzoo.list_models(task="image-classification")
CANONICAL = paperzoo.list_models(task="image-classification", canonical_only=True)


def small_input(name: str, batch: int, *, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """Images at max(min_size, 32) pixels (or the one size a model takes); CoordConv's coordinates as its card
    draws them."""
    spec = paperzoo.model_card(name).input
    generator = torch.Generator().manual_seed(seed)
    if spec.kind != "image":
        return spec.example_input(batch, generator=generator).to(device)
    channels, height, width = spec.shape
    if not spec.fixed_size:
        height = width = max(spec.min_size, 32)
    return torch.randn(batch, channels, height, width, generator=generator).to(device)


def meta_model(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return paperzoo.create_model(name).eval()


def stages_run_once(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs of the shallowest submodules (top-level ones, or the next level where fewer than two of those
    qualify) that run exactly once in an eager forward pass of ``x`` and compute a new tensor, in the order they ran."""
    calls: dict[str, list] = {}

    def record(name: str, args: tuple, output: object) -> None:  # a copy: a later in-place op must not change it
        new = isinstance(output, torch.Tensor) and not any(output is arg for arg in args)
        calls.setdefault(name, []).append(output.clone() if new else None)

    hooks = [module.register_forward_hook(lambda module, args, output, name=name: record(name, args, output))
             for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    once = {name: outputs[0] for name, outputs in calls.items() if len(outputs) == 1 and outputs[0] is not None}
    for depth in range(1, 1 + max(name.count(".") + 1 for name in once)):
        stages = {name: output for name, output in once.items() if name.count(".") + 1 == depth}
        if len(stages) >= 2:
            return stages
    return {}


# --- (b) every other classifier, on the meta device ---------------------------------------------------------------

@pytest.mark.parametrize("name", [name for name in CLASSIFIERS if name not in CANONICAL])
def test_fx_symbolic_trace_captures_the_forward(name):
    model = meta_model(name)
    traced = torch.fx.symbolic_trace(model)
    assert traced(small_input(name, 2, device="meta")).shape == (2, model.num_classes)


# --- (a) every canonical classifier, with weights ---------------------------------------------------------------

@functools.lru_cache(maxsize=1)  # one model in memory at a time, built once for its checks
def weighted_case(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = randomize_weights(paperzoo.create_model(name)).eval()
    x = small_input(name, 2)
    with torch.no_grad():
        logits = model(x)
    assert_output_depends_on_input(logits)  # a comparison is only evidence if the output depends on the input
    return model, x, logits


@pytest.fixture(scope="module", autouse=True)
def _release_the_last_model():
    yield
    weighted_case.cache_clear()


def check_fx_trace(name: str) -> None:
    model, x, logits = weighted_case(name)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        assert_close_rel(traced(x), logits)


def check_feature_extractor(name: str) -> None:
    """Two stages (submodules) asked for by name, as torchvision's documentation does (``{"layer2": "feat2"}``):
    the extractor returns those two, each what a forward hook on it records."""
    model, x, _ = weighted_case(name)
    recorded = stages_run_once(model, x)
    assert len(recorded) >= 2, f"{name}: fewer than two submodules of one depth run once"
    names = list(recorded)
    requested = {names[len(names) // 3]: "early", names[2 * len(names) // 3]: "late"}
    extractor = create_feature_extractor(model, return_nodes=requested)
    with torch.no_grad():
        features = extractor(x)
    assert list(features) == ["early", "late"]
    for node, key in requested.items():
        assert_close_rel(features[key], recorded[node])


WEIGHTED_CHECKS = {"fx": check_fx_trace, "feature_extractor": check_feature_extractor}


@pytest.mark.parametrize("name, check", [pytest.param(name, check, id=f"{name}-{check}")
                                         for name in CANONICAL for check in WEIGHTED_CHECKS])
def test_graph_capture_equals_eager(name, check):
    WEIGHTED_CHECKS[check](name)


# --- (c) the input checks still run outside fx ---------------------------------------------------------------------

BAD_INPUTS = {  # one model per kind of check that skips itself on fx proxies, with an input it refuses
    "resnet18": ((2, 1, 32, 32), "expects a float tensor of shape \\(N, 3, H, W\\)"),  # the shared image check
    "vit_b_16": ((2, 3, 32, 32), "with \\(H, W\\) = \\(224, 224\\)"),  # ViT's own size check
    "hrnet_w18_small": ((2, 3, 40, 40), "ceil\\(H/4\\) and ceil\\(W/4\\) multiples of 8"),  # HRNet's streams
    "coordconv_classifier": ((2, 3), "of shape \\(N, 2\\)"),  # CoordConv's coordinates
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_input_checks_still_raise_in_eager_mode_and_under_export(name):
    shape, message = BAD_INPUTS[name]
    model = meta_model(name)
    torch.fx.symbolic_trace(model)  # the checks skip themselves while fx traces ...
    bad = torch.zeros(shape, device="meta")
    with pytest.raises(ValueError, match=message):  # ... and only then
        model(bad)
    with pytest.raises(ValueError, match=message):  # torch.export's fake tensors have shapes: the checks run
        torch.export.export(model, (bad,))


# --- (d) torch.export with a dynamic batch ----------------------------------------------------------------------

def _export_check():
    import test_export

    return test_export


def test_every_canonical_classifier_is_exported_somewhere():
    """tests/test_export.py exports each canonical classifier (the deep ones with fewer units of the same kinds), or
    says why not (ODE-Net's adaptive solver)."""
    export = _export_check()
    missing = [name for name in CANONICAL if name not in export.MODELS and name not in export.EXPORT_EXCLUDED]
    assert not missing, f"canonical classifiers that no test exports: {missing}"


# --- TorchScript: what the module docstrings say ----------------------------------------------------------------

def _says_it_does_not_script(name: str) -> bool:
    return "TorchScript:" in (inspect.getmodule(model_builder(name)).__doc__ or "")


@pytest.mark.parametrize("name", [name for name in CANONICAL if _says_it_does_not_script(name)])
def test_a_model_whose_docstring_says_it_does_not_script_does_not(name):
    """Each file whose reference compiles with torch.jit.script says whether this one does (issue 21): it does
    not, and the statement names the reference library of the card."""
    library = paperzoo.model_card(name).reference.split(":")[0].split(".")[0]  # "torchvision" or "timm"
    assert f"TorchScript: {library}'s " in inspect.getmodule(model_builder(name)).__doc__
    with pytest.raises(Exception):  # noqa: B017 (TorchScript raises several types of its frontend errors)
        torch.jit.script(meta_model(name))
