"""DenseNet: what the generic contract and parity tests do not see. The dense connectivity (eq. 2) and the
channel arithmetic of the growth rate and the compression, the features_only maps against torchvision's
intermediate outputs, the smallest input, the released checkpoints' key spelling, dropout's place, and
memory-efficient checkpointing (same outputs and gradients as torchvision's, fewer saved activations,
running statistics updated once)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

import paperzoo
from conftest import assert_close_rel, randomize_batchnorm
from paperzoo.interop import convert_state_dict
from paperzoo.models.classification.densenet import DenseBlock, DenseNet


def small_pair(**kwargs) -> tuple[DenseNet, torchvision.models.DenseNet]:
    """A small DenseNet-BC and torchvision's with the same configuration and the same (converted) weights."""
    torch.manual_seed(0)
    reference = randomize_batchnorm(torchvision.models.DenseNet(growth_rate=8, block_config=(3, 4),
                                                                num_init_features=16, num_classes=10, **kwargs))
    ours = DenseNet(growth_rate=8, layers_per_block=(3, 4), stem_channels=16, num_classes=10, **kwargs)
    paperzoo.load_weights(ours, reference.state_dict(), source="torchvision")
    return ours, reference


@pytest.mark.parametrize("name, growth_rate, stem, block_inputs, final", [
    # Table 1 of the paper (k, 2k stem, θ = 0.5); the final widths 1024 and 2208 are the in_features of
    # torchvision's classifiers.
    ("densenet121", 32, 64, (64, 128, 256, 512), 1024),
    ("densenet161", 48, 96, (96, 192, 384, 1056), 2208),
])
def test_layer_l_of_a_block_reads_k0_plus_l_minus_1_times_k_channels(name, growth_rate, stem, block_inputs, final):
    with torch.device("meta"):
        model = paperzoo.create_model(name)
    assert model.conv0.conv.out_channels == stem == 2 * growth_rate
    blocks = [model.blocks.get_submodule(f"dense_block{b}") for b in range(1, 5)]
    for block, k0 in zip(blocks, block_inputs, strict=True):
        for ell, layer in enumerate(block.values(), start=1):
            assert layer.bottleneck.norm.num_features == k0 + (ell - 1) * growth_rate
            # the bottleneck: BN-ReLU-Conv(1×1) to 4k maps, then BN-ReLU-Conv(3×3) to k maps
            assert [type(m) for m in layer.bottleneck] == [torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.Conv2d]
            assert layer.bottleneck.conv.weight.shape == (4 * growth_rate, k0 + (ell - 1) * growth_rate, 1, 1)
            assert layer.conv3x3.conv.weight.shape == (growth_rate, 4 * growth_rate, 3, 3)
        assert block.out_channels == k0 + len(block) * growth_rate
    for t, (block, next_k0) in enumerate(zip(blocks[:-1], block_inputs[1:], strict=True), start=1):
        assert block.out_channels // 2 == next_k0  # compression θ = 0.5: ⌊θm⌋ maps
        assert model.blocks.get_submodule(f"transition{t}").compress.conv.out_channels == next_k0
    assert model.num_features == blocks[-1].out_channels == final


def test_each_layer_reads_the_concatenation_of_all_earlier_maps():
    """x_ℓ = H_ℓ([x_0, x_1, …, x_{ℓ−1}]) (eq. 2), and the block returns [x_0, …, x_L]."""
    torch.manual_seed(0)
    block = DenseBlock(num_layers=4, in_channels=5, growth_rate=3).eval()
    inputs, outputs = [], []
    for layer in block.values():
        layer.bottleneck.register_forward_hook(lambda m, args, out: inputs.append(args[0]))
        layer.register_forward_hook(lambda m, args, out: outputs.append(out))
    x0 = torch.randn(2, 5, 6, 6)
    with torch.no_grad():
        y = block(x0)
    for ell in range(4):
        assert torch.equal(inputs[ell], torch.cat([x0, *outputs[:ell]], dim=1))
        assert outputs[ell].shape == (2, 3, 6, 6)
    assert torch.equal(y, torch.cat([x0, *outputs], dim=1)) and y.shape[1] == 5 + 4 * 3


def test_transition_compresses_to_the_floor_of_theta_m_and_halves_the_map():
    model = DenseNet(growth_rate=3, layers_per_block=(1, 1), stem_channels=4, num_classes=2)
    transition = model.blocks.transition1
    assert transition.compress.norm.num_features == 7  # 4 + 1·3
    assert transition.compress.conv.out_channels == 3  # ⌊0.5 · 7⌋
    assert transition(torch.randn(1, 7, 10, 10)).shape == (1, 3, 5, 5)
    assert DenseNet(growth_rate=3, layers_per_block=(1, 1), stem_channels=4,
                    compression=1.0).blocks.transition1.compress.conv.out_channels == 7


@pytest.fixture(scope="module")
def densenet121_reference() -> torchvision.models.DenseNet:
    torch.manual_seed(0)
    return randomize_batchnorm(torchvision.models.densenet121()).eval()


def test_features_only_maps_are_torchvisions_intermediate_outputs(densenet121_reference):
    reference = densenet121_reference
    backbone = paperzoo.create_model("densenet121", features_only=True).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("classifier.")}
    paperzoo.load_weights(backbone, state, source="torchvision")
    assert [(i.channels, i.stride, i.module) for i in backbone.feature_info] == [
        (256, 4, "blocks.dense_block1"), (512, 8, "blocks.dense_block2"), (1024, 16, "blocks.dense_block3"),
        (1024, 32, "final_norm")]
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        features = backbone(x)
        f = reference.features
        expected = []
        y = f.pool0(f.relu0(f.norm0(f.conv0(x))))
        for b in range(1, 5):
            y = f.get_submodule(f"denseblock{b}")(y)
            expected.append(F.relu(f.norm5(y)) if b == 4 else y)  # the classifier's input: norm5, then ReLU
            if b < 4:
                y = f.get_submodule(f"transition{b}")(y)
    for feature, reference_map, info in zip(features, expected, backbone.feature_info, strict=True):
        assert_close_rel(feature, reference_map)
        assert feature.shape[-2:] == (96 // info.stride, 64 // info.stride)
    truncated = paperzoo.create_model("densenet121", features_only=True, out_indices=(2,))
    assert not any(key.startswith(("final_norm", "blocks.dense_block4")) for key in truncated.state_dict())


def test_smallest_input_is_torchvisions(densenet121_reference):
    """29×29 is the smallest input torchvision's DenseNet takes: below it, the last average pool has no pixel."""
    reference = densenet121_reference
    model = paperzoo.load_weights(paperzoo.create_model("densenet121"), reference.state_dict(), "torchvision").eval()
    smallest = model.min_input_size
    with torch.no_grad():
        x = torch.randn(1, 3, smallest, smallest)
        assert_close_rel(model(x), reference(x))
        with pytest.raises(RuntimeError):
            reference(torch.randn(1, 3, smallest - 1, smallest - 1))
        with pytest.raises(RuntimeError):  # the network itself, without our input check
            model.blocks(model.pool0(model.conv0(torch.randn(1, 3, smallest - 1, smallest - 1))))
        with pytest.raises(ValueError, match=f"H, W >= {smallest}"):
            model(torch.randn(1, 3, smallest - 1, smallest))


def test_released_checkpoint_spelling_loads():
    """The released ImageNet weights name the dense layers' parts ``norm.1`` rather than ``norm1``."""
    ours, reference = small_pair()
    legacy = {k.replace("norm1", "norm.1").replace("conv1", "conv.1").replace("norm2", "norm.2")
              .replace("conv2", "conv.2") if "denselayer" in k else k: v for k, v in reference.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    fresh = DenseNet(growth_rate=8, layers_per_block=(3, 4), stem_channels=16, num_classes=10)
    paperzoo.load_weights(fresh, legacy, source="torchvision")
    for (name, a), b in zip(ours.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_dropout_sits_where_torchvision_puts_it():
    ours, reference = small_pair(drop_rate=0.3)
    ours.train()
    reference.train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    expected = reference(x)
    torch.manual_seed(1)
    assert_close_rel(ours(x), expected)


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of one forward call."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x)
    return sum(storages.values())


def test_memory_efficient_training_step_equals_torchvisions_and_keeps_running_statistics():
    ours, reference = small_pair(memory_efficient=True)
    plain = DenseNet(growth_rate=8, layers_per_block=(3, 4), stem_channels=16, num_classes=10)
    plain.load_state_dict(ours.state_dict())
    assert ours.blocks.dense_block1.layer1.memory_efficient
    x = torch.randn(4, 3, 32, 32)
    for model in (ours, reference, plain):
        model.train()
        model(x).pow(2).mean().backward()

    # Outputs and gradients equal torchvision's memory-efficient network and our plain one.
    with torch.no_grad():
        assert_close_rel(ours.eval()(x), plain.eval()(x))
    reference_grads = convert_state_dict(ours, {n: p.grad for n, p in reference.named_parameters()}, "torchvision")
    for (name, p), q in zip(ours.named_parameters(), plain.parameters(), strict=True):
        assert_close_rel(p.grad, reference_grads[name])
        assert_close_rel(p.grad, q.grad)

    # Running statistics: one update per step, as without checkpointing (torchvision's recomputation
    # counts the checkpointed BatchNorms twice).
    norm = ours.blocks.dense_block1.layer2.bottleneck.norm
    assert norm.num_batches_tracked.item() == 1
    assert reference.features.denseblock1.denselayer2.norm1.num_batches_tracked.item() == 2
    for a, b in zip(ours.buffers(), plain.buffers(), strict=True):
        assert torch.equal(a, b)


def test_memory_efficient_keeps_fewer_activations():
    """The kept concatenations grow quadratically with a block's depth; checkpointed, they are not kept."""
    config = dict(growth_rate=8, layers_per_block=(6, 12), stem_channels=16, num_classes=10)
    efficient, plain = DenseNet(**config, memory_efficient=True).train(), DenseNet(**config).train()
    x = torch.randn(2, 3, 32, 32)
    assert saved_activation_bytes(efficient, x) < 0.7 * saved_activation_bytes(plain, x)
