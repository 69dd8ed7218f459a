"""NASNet-A: what the generic tests do not cover.

The searched cells as data against TF-slim's released definition, and the wiring the built cells follow; timm's
TensorFlow-port details (padding at odd sizes, the factorized reduction's shifted grid, the skipped reduction
input) checked on a small timm NASNet at many sizes, and its feature maps; the mobile model's parameter count,
derived by hand, and its multiply-adds against the paper; the auxiliary classifier (off by default, so the
generic tests never build it) in training mode; ScheduledDropPath.
"""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models.nasnet import NASNetALarge

import paperzoo
from conftest import assert_close_rel, randomize_weights
from paperzoo.measure import count_parameters, measure_gmacs
from paperzoo.models.classification.nasnet import (
    NORMAL_CELL,
    REDUCTION_CELL,
    Cell,
    NASNet,
    Pool3x3,
    ScheduledDropPath,
    SeparableConvStack,
)


def tiny(**kwargs) -> NASNet:
    """NASNet-A (6 @ 192): the large model's layout with 8 filters in the first stage and an 8-filter stem, so
    timm's class builds the same network (its cell count is fixed at 6 per stage)."""
    features_only, out_indices = kwargs.pop("features_only", False), kwargs.pop("out_indices", None)
    model = NASNet(**{"cells_per_stage": 6, "penultimate_filters": 192, "stem_filters": 8, "num_classes": 10,
                      **kwargs})
    if features_only:  # what create_model(..., features_only=True) does
        model.as_backbone(out_indices)
    return model


def tiny_timm() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_weights(NASNetALarge(num_classes=10, stem_size=8, num_features=192)).eval()


# --- Figure 4 as data ------------------------------------------------------------------------------------

def to_tf_slim(spec):
    """Our cell table in TF-slim's encoding: flat operation and input lists (left, right per block) and the
    used-state mask over the 7 hidden states (1 = left out of the concatenation)."""
    names = {"sep_3x3": "separable_3x3_2", "sep_5x5": "separable_5x5_2", "sep_7x7": "separable_7x7_2",
             "avg_3x3": "avg_pool_3x3", "max_3x3": "max_pool_3x3", "identity": "none"}
    operations = [names[op] for block in spec.blocks for op, _ in block]
    inputs = [state for block in spec.blocks for _, state in block]
    used = [int(state not in spec.concatenated) for state in range(2 + len(spec.blocks))]
    return operations, inputs, used


def test_cells_equal_the_released_definition():
    # NasNetANormalCell and NasNetAReductionCell in tensorflow/models, research/slim/nets/nasnet/nasnet_utils.py:
    # the cells of Figure 4 as Google released them ("separable_kxk_2": a separable convolution applied twice).
    assert to_tf_slim(NORMAL_CELL) == (
        ["separable_5x5_2", "separable_3x3_2", "separable_5x5_2", "separable_3x3_2", "avg_pool_3x3", "none",
         "avg_pool_3x3", "avg_pool_3x3", "separable_3x3_2", "none"],
        [0, 1, 1, 1, 0, 1, 1, 1, 0, 0],
        [1, 0, 0, 0, 0, 0, 0])
    assert to_tf_slim(REDUCTION_CELL) == (
        ["separable_5x5_2", "separable_7x7_2", "max_pool_3x3", "separable_7x7_2", "avg_pool_3x3",
         "separable_5x5_2", "none", "avg_pool_3x3", "separable_3x3_2", "max_pool_3x3"],
        [0, 1, 0, 1, 0, 1, 3, 2, 2, 0],
        [1, 1, 1, 0, 0, 0, 0])


def describe(op: torch.nn.Module) -> tuple[str, int]:
    """A built operation as (Figure 4 name, stride)."""
    if isinstance(op, SeparableConvStack):
        k = op.sep1.depthwise.kernel_size[0]
        return f"sep_{k}x{k}", op.sep1.depthwise.stride[0]
    if isinstance(op, Pool3x3):
        return f"{op.kind}_3x3", op.stride
    assert isinstance(op, torch.nn.Identity), type(op)
    return "identity", 1


def test_built_cells_follow_their_tables():
    """Every block of every cell of the mobile model applies its table's operations to its table's inputs, with
    stride 2 exactly on a reduction cell's branches that read the cell's inputs (states 0 and 1)."""
    with torch.device("meta"):
        model = paperzoo.create_model("nasnet_a_mobile")
    kinds = ["R", "R"] + (["N"] * 4 + ["R"]) * 2 + ["N"] * 4  # two stem cells, then N = 4 normal cells a stage
    assert [("R" if cell.reduction else "N") for cell in model.cells] == kinds
    for cell in model.cells:
        spec = REDUCTION_CELL if cell.reduction else NORMAL_CELL
        assert cell.spec is spec
        for block, block_spec in zip(cell.blocks, spec.blocks, strict=True):
            for op, (name, state) in [(block.left, block_spec.left), (block.right, block_spec.right)]:
                assert describe(op) == (name, 2 if cell.reduction and state < 2 else 1)
            assert (block.left_input, block.right_input) == (block_spec.left[1], block_spec.right[1])


def test_normal_cell_output_depends_on_the_inputs_its_table_names():
    """Change h_i only: the concatenated states that Figure 4 computes from h_{i-1} alone (state 1 itself,
    block 1 = sep 5x5 + sep 3x3 of h_{i-1}, block 3 = two average poolings of h_{i-1}) must not move; those
    reading h_i must. And the other way round for block 4 (sep 3x3 of h_i plus h_i)."""
    torch.manual_seed(0)
    cell = Cell(NORMAL_CELL, current_channels=6, previous_channels=5, channels=4, reduction=False,
                previous_adapt="1x1").eval()
    h, h_prev = torch.randn(2, 6, 9, 9), torch.randn(2, 5, 9, 9)
    with torch.no_grad():
        base = cell(h, h_prev).split(4, dim=1)  # states 1, 2, 3, 4, 5, 6
        new_h = cell(h + torch.randn_like(h), h_prev).split(4, dim=1)
        new_prev = cell(h, h_prev + torch.randn_like(h_prev)).split(4, dim=1)
    reads_h = [any(state == 0 for _, state in block) for block in NORMAL_CELL.blocks]
    reads_prev = [any(state == 1 for _, state in block) for block in NORMAL_CELL.blocks]
    assert reads_h == [True, False, True, False, True] and reads_prev == [True, True, True, True, False]
    for state, before, after_h, after_prev in zip(NORMAL_CELL.concatenated, base, new_h, new_prev, strict=True):
        depends_on_h = state >= 2 and reads_h[state - 2]
        depends_on_prev = state == 1 or reads_prev[state - 2]
        assert torch.equal(before, after_h) is not depends_on_h, f"state {state} and h_i"
        assert torch.equal(before, after_prev) is not depends_on_prev, f"state {state} and h_(i-1)"


# --- timm's TensorFlow-port details, at many sizes ----------------------------------------------------------

@pytest.mark.parametrize("size", [(3, 3), (37, 45), (64, 64)])
def test_small_timm_nasnet_equals_ours_at_odd_and_even_sizes(size):
    """TensorFlow "SAME" padding, the zero-counting stride-2 average pooling and the factorized reduction's
    shifted grid act differently at odd and even sizes, down to 3x3, the smallest input."""
    reference = tiny_timm()
    ours = paperzoo.load_weights(tiny(), reference.state_dict(), source="timm").eval()
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        assert (expected[0] - expected[1]).abs().max() > 1e-3 * expected.abs().max()
        assert_close_rel(ours(x), expected)


def test_skip_reduction_input_rewires_the_cell_after_each_reduction():
    """With the same weights, the large model's wiring (the cell after a reduction reads the reduction's own
    h_(i-1)) is timm's; the mobile model's (it reads the reduction's input) is another network."""
    reference = tiny_timm()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        expected = reference(x)
        for skip in (True, False):
            ours = paperzoo.load_weights(tiny(skip_reduction_input=skip), reference.state_dict(), source="timm")
            close = bool((ours.eval()(x) - expected).abs().max() <= 1e-5 * expected.abs().max())
            assert close is skip


def test_features_equal_timm_intermediates():
    """features_only returns timm's five maps: the stem convolution, then the rectified outputs of the first stem
    cell and of each stage's last cell; with timm's channels and strides for the large model."""
    reference = tiny_timm()
    ours = tiny(features_only=True)
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("last_linear")}
    paperzoo.load_weights(ours, state, source="timm")
    x = torch.randn(1, 3, 50, 61)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, intermediates_only=True)
        features = ours.eval()(x)
    for feature, reference_feature in zip(features, expected, strict=True):
        assert_close_rel(feature, reference_feature)
    with torch.device("meta"):
        large = paperzoo.create_model("nasnet_a_large", features_only=True)
        timm_large = timm.create_model("nasnetalarge")
    assert [(info.channels, info.stride) for info in large.feature_info] == [
        (f["num_chs"], f["reduction"]) for f in timm_large.feature_info]


# --- the mobile model: count and cost -----------------------------------------------------------------------

def test_mobile_parameter_count_derived_by_hand():
    """NASNet-A (4 @ 1056), counted from the paper's description and TF-slim's mobile configuration: 1056 =
    6 x 44 x 2^2 gives 44 filters in the first stage (88, 176 after each reduction; 11 and 22 in the stem
    cells), a 32-filter 3x3 stem convolution, 1000 classes. BatchNorm: 2 parameters per channel."""
    def sep(c_in, c, k):  # ReLU, depthwise k x k, pointwise 1 x 1, BN; twice
        return (c_in * k * k + c_in * c + 2 * c) + (c * k * k + c * c + 2 * c)

    def adapt(c_in, c):  # ReLU, 1 x 1 conv, BN
        return c_in * c + 2 * c

    def factorized(c_in, c):  # two 1 x 1 convs with c / 2 filters each, BN over their concatenation
        return 2 * c_in * (c // 2) + 2 * c

    def normal(c_current, c_previous, c, previous_is_larger):
        ops = sep(c, c, 5) + sep(c, c, 3) + sep(c, c, 5) + sep(c, c, 3) + sep(c, c, 3)  # Figure 4, left
        previous = factorized(c_previous, c) if previous_is_larger else adapt(c_previous, c)
        return adapt(c_current, c) + previous + ops

    def reduction(c_current, c_previous, c, previous="1x1"):
        c_prev_state = c_previous if previous == "none" else c
        ops = (sep(c, c, 5) + sep(c_prev_state, c, 7) + sep(c_prev_state, c, 7) + sep(c_prev_state, c, 5)
               + sep(c, c, 3))  # Figure 4, right: the 7x7, 7x7 and second 5x5 read h_(i-1)
        adapted = {"none": 0, "1x1": adapt(c_previous, c), "factorized": factorized(c_previous, c)}[previous]
        return adapt(c_current, c) + adapted + ops

    total = 3 * 3 * 3 * 32 + 2 * 32  # stem convolution and its BN
    total += reduction(32, 32, 11, previous="none")  # stem cell 0: 44 channels out
    total += reduction(44, 32, 22, previous="factorized")  # stem cell 1: 88 channels out
    channels_in = {44: (88, 44), 88: (352, 264), 176: (704, 528)}  # (h_i, h_(i-1)) of a stage's first cell
    for stage, c in enumerate((44, 88, 176)):
        if stage > 0:
            total += reduction(6 * c // 2, 6 * c // 2, c)
        current, previous = channels_in[c]
        total += normal(current, previous, c, previous_is_larger=True)
        # the second cell reads the stage opener's input (a stem or reduction cell output: 4 x c channels)
        total += normal(6 * c, 4 * c if stage > 0 else 88, c, previous_is_larger=False)
        total += 2 * normal(6 * c, 6 * c, c, previous_is_larger=False)
    total += 1056 * 1000 + 1000  # the classifier
    with torch.device("meta"):
        model = paperzoo.create_model("nasnet_a_mobile")
    assert count_parameters(model) == total == 5_289_978
    assert round(total / 1e6, 1) == 5.3  # the paper's Table 3
    assert paperzoo.model_card("nasnet_a_mobile").params_match(total)


def test_mobile_card_names_its_library_reference():
    """Keras's NASNetMobile summary: 5,326,716 total = 5,289,978 trainable + 36,738 BatchNorm moving statistics
    (2 per BN channel; our count, like torch's, holds them as buffers). The card names it."""
    card = paperzoo.model_card("nasnet_a_mobile")
    assert "NASNetMobile" in card.params_source and "Keras" in card.params_source and "NASNetMobile" in card.notes
    assert "5,289,978" in card.params_source and "5,326,716" in card.params_source
    with torch.device("meta"):
        model = paperzoo.create_model("nasnet_a_mobile")
    moving = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    assert count_parameters(model) + moving == 5_326_716


@pytest.mark.parametrize("name, paper_gmacs", [("nasnet_a_mobile", 0.564), ("nasnet_a_large", 23.8)])
def test_multiply_adds_equal_the_paper(name, paper_gmacs):
    """The paper's Tables 2 and 3: 564M multiply-adds for (4 @ 1056) at 224, 23.8B for (6 @ 4032) at 331."""
    card = paperzoo.model_card(name)
    with torch.device("meta"):
        measured = measure_gmacs(paperzoo.create_model(name).eval(), card.example_input(1))
    digits = len(str(paper_gmacs).split(".")[1])
    assert round(measured, digits) == paper_gmacs


# --- the auxiliary classifier --------------------------------------------------------------------------------

def test_auxiliary_classifier_sizes():
    """TF-slim's head: a 1x1 convolution to 128 channels (+ BN), a convolution to 768 (+ BN) as large as the
    5x5/3-pooled stride-16 map (21x21 → 6x6 at 331, 14x14 → 4x4 at 224), and the classifier."""
    for name, cells_out, kernel in [("nasnet_a_large", 2016, 6), ("nasnet_a_mobile", 528, 4)]:
        with torch.device("meta"):
            model = paperzoo.create_model(name, aux_logits=True)
            without = paperzoo.create_model(name)
        head = cells_out * 128 + 2 * 128 + 128 * 768 * kernel * kernel + 2 * 768 + 768 * 1000 + 1000
        assert model.aux_classifier.hidden.conv.kernel_size == (kernel, kernel)
        assert count_parameters(model) == count_parameters(without) + head
    # The smallest training inputs: the pooled map must still cover the kernel (found by trying sizes).
    for name, smallest in [("nasnet_a_large", 307), ("nasnet_a_mobile", 211)]:
        with torch.device("meta"):
            model = paperzoo.create_model(name, aux_logits=True).train()
            assert model.aux_min_input_size == smallest
            assert model(torch.randn(2, 3, smallest, smallest))[1].shape == (2, 1000)
            with pytest.raises(ValueError, match=rf"H, W >= {smallest}"):
                model(torch.randn(2, 3, smallest - 1, smallest - 1))


def test_auxiliary_classifier_in_training_mode():
    """In training mode the model returns (logits, aux_logits) and the loss is the released code's: label
    smoothing 0.1, auxiliary weight 0.4; in eval mode the logits alone. (A small NASNet, built for 147x147
    inputs: a 10x10 map at stride 16, pooled to 2x2.)"""
    torch.manual_seed(0)
    model = tiny(aux_logits=True, image_size=147)
    assert model.aux_classifier.hidden.conv.kernel_size == (2, 2)
    x, target = torch.randn(2, 3, 147, 147), torch.tensor([1, 5])
    logits, aux = model.train()(x)
    assert logits.shape == aux.shape == (2, 10)
    loss = model.loss((logits, aux), target)
    smoothed = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    assert torch.allclose(loss, smoothed(logits, target) + 0.4 * smoothed(aux, target))
    loss.backward()
    assert model.aux_classifier.fc.weight.grad.abs().sum() > 0
    assert model.aux_classifier.proj.conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 10)
    model.reset_classifier(3)
    assert model.aux_classifier.fc.out_features == 3 and model.train()(x)[1].shape == (2, 3)


def test_aux_logits_rejected_for_a_backbone():
    with pytest.raises(ValueError, match="aux_logits"):
        tiny(features_only=True, aux_logits=True)


# --- ScheduledDropPath -----------------------------------------------------------------------------------------

def test_scheduled_drop_path_rises_linearly_over_training_and_depth():
    drop = ScheduledDropPath(0.5).train()
    x = torch.ones(4000, 1, 1, 1)
    drop.set_progress(0.0)
    assert torch.equal(drop(x), x)  # the start of training: nothing dropped
    drop.set_progress(0.6)
    out = drop(x)
    p = 0.5 * 0.6
    kept = out != 0
    assert torch.allclose(out[kept], torch.tensor(1 / (1 - p)))  # whole examples dropped, the rest rescaled
    assert abs((out == 0).float().mean().item() - p) < 0.03
    assert torch.equal(drop.eval()(x), x)

    with torch.device("meta"):
        model = paperzoo.create_model("nasnet_a_mobile", drop_path_rate=0.3)
    # TF-slim: the k-th of K = 12 + 2 + 2 cells (stem and reduction cells included) drops with 0.3 (k + 1) / K.
    finals = [cell.drop_path.final_drop_prob for cell in model.cells]
    assert finals == pytest.approx([0.3 * (k + 1) / 16 for k in range(16)])
    model.set_drop_path_progress(0.25)
    assert [cell.drop_path.p for cell in model.cells] == pytest.approx([0.25 * f for f in finals])


def test_identity_branches_are_never_dropped():
    """With every operation's path dropped, a normal cell's block 4 (sep 3x3 of h_i plus h_i) still passes h_i."""
    torch.manual_seed(0)
    cell = Cell(NORMAL_CELL, 4, 4, 4, reduction=False, previous_adapt="1x1", drop_prob=0.999).train()
    h = torch.randn(2, 4, 5, 5)
    states_6 = cell(h, torch.randn(2, 4, 5, 5)).split(4, dim=1)[-1]
    adapted = cell.adapt_current(h)  # training-mode BN on the same batch: the same values
    assert torch.equal(states_6, adapted)  # the sep 3x3 path dropped (p = 0.999), the identity kept
