"""Gradient checkpointing (issue 12) over the registry, and the memory measure that shows what it saves.

Every registered architecture whose model class has ``set_grad_checkpointing`` is found here by itself (one
representative per model class: its smallest registered variant) and checked in training mode, dropout and
stochastic depth on: a step with checkpointing gives the same outputs and gradients as one without (1e-5
relative, same seed), leaves the same BatchNorm running statistics, and holds less activation memory
(``paperzoo.measure.peak_training_memory``). ``peak_training_memory`` itself is checked on a chain of linear
layers whose activation sizes are known.

The models are small configurations of each class (``TINY``), deep enough (4+ blocks) for checkpointing to
matter; a new class without an entry runs at its smallest registered variant (VGG-11, BERT's and wav2vec 2.0's task
heads ran that way at 133M and 110M parameters until they got entries: 71 -> 24 s for the file). Measured: 24 s of
test time, `pytest -n 2 tests/test_grad_checkpointing.py`, quiet 2-core machine.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import paperzoo
from conftest import assert_close_rel
from paperzoo.layers.checkpoint import checkpoint_seq
from paperzoo.measure import _tensors, peak_training_memory, run_example
from paperzoo.registry import model_builder, model_card

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models, one thread

def _images(size: int, batch: int = 2) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(batch, 3, size, size)


def _tokens(vocab: int, length: int, low: int = 0) -> Callable[[], torch.Tensor]:
    return lambda: torch.randint(low, vocab, (2, length))


def _classes() -> dict[str, type]:
    """Model classes by name, resolved from the builders' return annotations (no model is built)."""
    return {model_builder(n).__annotations__["return"]:
            getattr(sys.modules[model_builder(n).__module__], model_builder(n).__annotations__["return"])
            for n in paperzoo.list_models()}


def _tiny() -> dict[str, tuple[Callable[[], nn.Module], Callable[[], Any]]]:
    """A small but deep configuration of each class, and its input: narrow widths, 4 or more blocks, dropout and
    stochastic depth switched on where the class has them."""
    from paperzoo.models.classification.efficientnet_v2 import StageSpec
    from paperzoo.models.classification.resnet import Bottleneck

    c = _classes()
    tiny_v2 = (StageSpec("fused", 1, 3, 1, 8, 2, None), StageSpec("fused", 4, 3, 2, 16, 2, None),
               StageSpec("mbconv", 4, 3, 2, 24, 2, 0.25), StageSpec("mbconv", 6, 3, 2, 32, 2, 0.25))
    transformer_kwargs = dict(vocab_size=50, d_model=32, num_heads=2, d_ff=64, num_encoder_layers=3,
                              num_decoder_layers=3)
    wav2vec2_kwargs = dict(hidden_size=32, num_layers=4, num_heads=4, ffn_dim=64, feature_channels=16,
                           position_kernel_size=16, position_groups=4, mask_prob=0.2, mask_span_length=3)
    bert_kwargs = dict(vocab_size=50, hidden_size=32, num_layers=4, num_heads=2, intermediate_size=64,
                       max_positions=32)
    return {
        "ResNet": (lambda: c["ResNet"](block=Bottleneck, blocks_per_stage=(2, 2, 2, 2), stem_width=16,
                                       stage_widths=(8, 16, 32, 64), num_classes=10), _images(64)),
        "ResNeXt": (lambda: c["ResNeXt"](blocks_per_stage=(2, 2, 2, 2), cardinality=4, bottleneck_width=2,
                                         num_classes=10), _images(64)),
        "SENet": (lambda: c["SENet"](blocks_per_stage=(2, 2, 2, 2), bottleneck_width=8, num_classes=10,
                                     drop_rate=0.2), _images(64)),
        "ResNeSt": (lambda: c["ResNeSt"](blocks_per_stage=(2, 2, 2, 2), bottleneck_width=8, stem_width=8,
                                         num_classes=10, drop_rate=0.2), _images(64)),
        "CBAMResNet": (lambda: c["CBAMResNet"](blocks_per_stage=(2, 2, 2, 2), num_classes=10), _images(32)),
        "PyramidNet": (lambda: c["PyramidNet"](units_per_stage=(2, 2, 2), alpha=24, bottleneck=False),
                       _images(32)),
        "DenseNet": (lambda: c["DenseNet"](growth_rate=8, layers_per_block=(4, 6, 6, 4), stem_channels=16,
                                           drop_rate=0.2, num_classes=10), _images(64)),
        "ConvNeXt": (lambda: c["ConvNeXt"](depths=(1, 2, 2, 1), widths=(8, 16, 32, 64), stochastic_depth_prob=0.3,
                                           layer_scale_init=0.5, num_classes=10), _images(64)),
        "ConvNeXtV2": (lambda: c["ConvNeXtV2"](depths=(1, 2, 2, 1), widths=(8, 16, 32, 64),
                                               stochastic_depth_prob=0.3, num_classes=10), _images(64)),
        "EfficientNet": (lambda: c["EfficientNet"](width_coefficient=0.25, depth_coefficient=0.5,
                                                   stochastic_depth_prob=0.3, num_classes=10), _images(64)),
        "EfficientNetV2": (lambda: c["EfficientNetV2"](stages=tiny_v2, stem_channels=8, head_channels=64,
                                                       stochastic_depth_prob=0.3, num_classes=10), _images(64)),
        # VGG-11's 4096-wide fc6 on the 7×7 map alone is 103M parameters: narrow blocks keep the 8 convolutions
        "VGG": (lambda: c["VGG"](convs_per_block=(1, 1, 2, 2, 2), block_widths=(8, 16, 32, 32, 32), num_classes=10),
                _images(64)),
        "MobileNetV2": (lambda: c["MobileNetV2"](width_mult=0.25, num_classes=10), _images(64)),
        "RegNet": (lambda: c["RegNet"](depth=6, w_0=8, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25,
                                       stem_width=8, num_classes=10), _images(64)),
        "VisionTransformer": (lambda: c["VisionTransformer"](img_size=32, patch_size=8, num_layers=4, num_heads=2,
                                                             hidden_dim=32, mlp_dim=64, dropout=0.1,
                                                             attention_dropout=0.1, num_classes=10), _images(32)),
        "SwinTransformer": (lambda: c["SwinTransformer"](embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                                                         window_size=4, dropout=0.1, attention_dropout=0.1,
                                                         stochastic_depth_prob=0.3, num_classes=10), _images(64)),
        "BERT": (lambda: c["BERT"](**bert_kwargs), _tokens(50, 16)),
        "BERTPreTraining": (lambda: c["BERTPreTraining"](**bert_kwargs), _tokens(50, 16)),
        "BERTMaskedLM": (lambda: c["BERTMaskedLM"](**bert_kwargs), _tokens(50, 16)),
        "BERTSequenceClassification": (lambda: c["BERTSequenceClassification"](num_classes=3, **bert_kwargs),
                                       _tokens(50, 16)),
        "GPT": (lambda: c["GPT"](vocab_size=50, max_positions=32, hidden_size=32, num_layers=4, num_heads=2,
                                 pre_norm=True), _tokens(50, 16)),
        # ids from 3 up: 0, 1, 2 are <s>, <pad>, </s>
        "Transformer": (lambda: c["Transformer"](**transformer_kwargs),
                        lambda: (torch.randint(3, 50, (2, 12)), torch.randint(3, 50, (2, 10)))),
        "Wav2Vec2": (lambda: c["Wav2Vec2"](**wav2vec2_kwargs), lambda: torch.randn(2, 4000)),
        "Wav2Vec2CTC": (lambda: c["Wav2Vec2CTC"](**wav2vec2_kwargs), lambda: torch.randn(2, 4000)),
        "Wav2Vec2PreTraining": (lambda: c["Wav2Vec2PreTraining"](**wav2vec2_kwargs, codebook_size=8,
                                                                 codevector_dim=16, final_dim=12, num_negatives=5),
                                lambda: torch.randn(2, 4000)),
    }


def _checkpointable() -> list[str]:
    """One registered variant (the smallest) per model class that has ``set_grad_checkpointing``."""
    smallest: dict[str, str] = {}
    classes = _classes()
    for name in paperzoo.list_models():
        class_name = model_builder(name).__annotations__["return"]
        if hasattr(classes[class_name], "set_grad_checkpointing") and not getattr(
                classes[class_name], "no_checkpointing_reason", ""):  # CapsNet, ODE-Net: one unit, nothing saved
            if class_name not in smallest or model_card(name).params < model_card(smallest[class_name]).params:
                smallest[class_name] = name
    return sorted(smallest.values())


CHECKPOINTABLE = _checkpointable()


def build(name: str) -> tuple[nn.Module, Any]:
    """The tiny configuration of ``name``'s class and its input, or, for a class without one, the variant
    itself at its card's input."""
    torch.manual_seed(0)
    tiny = _tiny().get(model_builder(name).__annotations__["return"])
    if tiny is None:
        spec = model_card(name).input
        if spec.kind == "image" and not spec.fixed_size:  # an image classifier: its smallest variant at 64 pixels
            size = max(64, spec.min_size)
            return paperzoo.create_model(name), torch.randn(2, spec.shape[0], size, size)
        return paperzoo.create_model(name), model_card(name).example_input(2)
    make_model, make_input = tiny
    return make_model(), make_input()


def weighted_loss(output: Any) -> torch.Tensor:
    """A scalar with a different random weight on every element of every output that carries a gradient, so
    that every output element's gradient differs (fixed seed: the same weights for both runs)."""
    generator = torch.Generator().manual_seed(1)
    return sum((t.float() * torch.randn(t.shape, generator=generator)).sum()
               for t in _tensors(output) if t.is_floating_point() and t.requires_grad)


def training_step(model: nn.Module, x: Any) -> Any:
    torch.manual_seed(0)  # the same dropout masks, stochastic depth draws, span masks in both runs
    output = run_example(model.train(), x)
    weighted_loss(output).backward()
    return output


def test_the_discovery_finds_the_families_that_have_it():
    assert {"resnet18", "vit_b_16", "bert_base", "gpt", "densenet121", "convnext_tiny"} <= set(CHECKPOINTABLE)


@pytest.mark.parametrize("name", CHECKPOINTABLE)
def test_checkpointing_keeps_gradients_and_running_statistics(name):
    plain, x = build(name)
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing(True)
    expected, got = training_step(plain, x), training_step(checkpointed, x)

    for a, b in zip(_tensors(got), _tensors(expected), strict=True):
        if a.is_floating_point():
            assert_close_rel(a.detach(), b.detach())
        else:
            assert torch.equal(a, b)
    with_grad = 0
    for (parameter, p), q in zip(checkpointed.named_parameters(), plain.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), parameter
        if q.grad is not None:
            assert_close_rel(p.grad, q.grad)
            with_grad += 1
    assert with_grad > 0
    # BatchNorm's running statistics and batch counters: one update per step, as without checkpointing.
    for (buffer, a), b in zip(checkpointed.named_buffers(), plain.buffers(), strict=True):
        assert torch.equal(a, b), buffer


@pytest.mark.parametrize("name", CHECKPOINTABLE)
def test_checkpointing_lowers_peak_training_memory(name):
    model, x = build(name)
    torch.manual_seed(0)  # the same span masks and distractors (wav2vec 2.0) in every measurement
    plain = peak_training_memory(model, x)
    model.set_grad_checkpointing(True)
    torch.manual_seed(0)
    checkpointed = peak_training_memory(model, x)
    model.set_grad_checkpointing(False)
    torch.manual_seed(0)
    assert peak_training_memory(model, x) == plain  # the switch turns it off again, and the measure repeats
    # AlexNet's peak is its 58M fully-connected weights' gradients, whatever checkpointing saves of its activations
    bound = 1.0 if name == "alexnet" else 0.8
    assert checkpointed < bound * plain, f"{checkpointed} bytes with checkpointing, {plain} without"


def test_checkpointing_acts_only_in_training_with_autograd(monkeypatch):
    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counted)
    model, x = _tiny()["VisionTransformer"][0](), _images(32)()
    model.set_grad_checkpointing(True)
    model.train()(x)
    assert len(calls) == 4  # one per encoder block
    with torch.no_grad():
        model(x)
    model.eval()(x)
    assert len(calls) == 4


class LinearChain(nn.Module):
    """``blocks`` blocks of two bias-free linear layers, d → d: every activation is one (N, d) float32 tensor."""

    grad_checkpointing = False

    def __init__(self, blocks: int, width: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(width, width, bias=False),
                                                    nn.Linear(width, width, bias=False)) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint_seq(self.blocks, x) if self.grad_checkpointing else self.blocks(x)


def test_peak_training_memory_on_a_chain_of_known_sizes():
    """Derived by hand for B blocks of two bias-free linear layers, activations of u = N·d·4 bytes, loss = sum.

    Without checkpointing each of the 2B layer outputs is saved by the next layer, except the last (the model
    output, dropped before the backward pass): 2B − 1 units held when the backward pass starts, which then
    allocates the last layer's input gradient (1 unit; the output gradient is an expanded scalar) before it
    frees anything: 2B units. With every block checkpointed, only the block inputs are held, B − 1 of them (the
    first is the input x, allocated before the step); the backward pass then recomputes the last block's inner
    activation (1 unit) and allocates the same input gradient: B + 1 units. A measure that counted what
    checkpointing discards would find 2B − 1 or more; one that counted the parameters' gradients (d·d·4 bytes
    each) far more. Scalars (the loss, its gradient) add a few bytes.
    """
    torch.manual_seed(0)
    blocks, batch, width = 6, 8, 64
    unit = batch * width * 4
    model, x = LinearChain(blocks, width), torch.randn(batch, width)
    plain = peak_training_memory(model, x, loss_fn=torch.sum)
    model.grad_checkpointing = True
    checkpointed = peak_training_memory(model, x, loss_fn=torch.sum)
    assert plain // unit == 2 * blocks and plain % unit < 64
    assert checkpointed // unit == blocks + 1 and checkpointed % unit < 64
