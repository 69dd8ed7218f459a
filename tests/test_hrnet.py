"""HRNet: what the generic contract and parity tests do not see. The stage / module / stream structure against
timm's, the exchange unit (eq. 3: Y_k = Σ_i a(X_i, k)) and its resampling paths, the stream sizes and the input
sizes the fusion can take, features_only against timm's feature extractor, and the pose network: its heatmaps,
its parameter count against the authors' configuration, its loss, its Gaussian targets and their decoding."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F

import paperzoo
from conftest import assert_close_rel, randomize_weights
from paperzoo.measure import count_parameters
from paperzoo.models.classification.hrnet import (
    ExchangeUnit,
    PoseHRNet,
    gaussian_heatmaps,
    keypoints_from_heatmaps,
)
from test_contract import check_output_structure

CLASSIFIERS = ["hrnet_w18_small", "hrnet_w18", "hrnet_w32", "hrnet_w48", "hrnet_w64"]


def meta(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return paperzoo.create_model(name, **kwargs)


# --- structure ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLASSIFIERS)
def test_streams_modules_and_blocks_per_stage_match_timm(name):
    """Stage s runs s streams of widths C·2^k; its modules and each stream's blocks are those of timm's config."""
    ours = meta(name)
    with torch.device("meta"):
        reference = timm.create_model(name)
    assert len(ours.stage1) == len(reference.layer1)
    for s in (2, 3, 4):
        stage, ref_stage = ours.get_submodule(f"stage{s}"), getattr(reference, f"stage{s}")
        assert len(stage.transition) == s and len(stage.hr_modules) == len(ref_stage)
        for module, ref_module in zip(stage.hr_modules, ref_stage, strict=True):
            assert len(module.streams) == ref_module.num_branches == s
            for k, (blocks, ref_blocks) in enumerate(zip(module.streams, ref_module.branches, strict=True)):
                assert len(blocks) == len(ref_blocks)
                assert blocks[0].conv1.conv.in_channels == ours.stream_widths[k] == ours.width * 2**k
            assert len(module.fusion.resample) == s  # every stream is an output of every fusion
    assert count_parameters(ours) == count_parameters(reference)


def test_classification_head_widens_merges_and_projects_to_2048():
    model = meta("hrnet_w32")
    assert [b.conv3.conv.out_channels for b in model.increase] == [128, 256, 512, 1024]
    assert [b.conv1.conv.in_channels for b in model.increase] == [32, 64, 128, 256]
    assert [(d.conv.in_channels, d.conv.out_channels, d.conv.stride) for d in model.downsample] == [
        (128, 256, (2, 2)), (256, 512, (2, 2)), (512, 1024, (2, 2))]
    assert model.final_layer.conv.out_channels == model.num_features == 2048
    assert model.final_layer.conv.kernel_size == (1, 1)


def test_stage4_streams_at_the_canonical_input():
    torch.manual_seed(0)
    model = paperzoo.create_model("hrnet_w18_small").eval()  # C = 16
    with torch.no_grad():
        streams = model.forward_streams(model.stem(torch.randn(1, 3, 224, 224)))
    assert [tuple(s.shape[1:]) for s in streams] == [(16, 56, 56), (32, 28, 28), (64, 14, 14), (128, 7, 7)]


# --- the exchange unit ----------------------------------------------------------------------------------------

def test_exchange_unit_sums_every_stream_resampled_to_each_resolution():
    torch.manual_seed(0)
    widths = (4, 8, 16)
    unit = randomize_weights(ExchangeUnit(widths)).eval()
    streams = [torch.randn(2, c, 16 // 2**k, 12 // 2**k) for k, c in enumerate(widths)]
    with torch.no_grad():
        outputs = unit(streams)
        assert [o.shape for o in outputs] == [s.shape for s in streams]
        for k, output in enumerate(outputs):
            row = unit.resample[k]
            expected = F.relu(sum(row[i](x) for i, x in enumerate(streams)))  # Y_k = Σ_i a(X_i, k)
            assert torch.equal(output, expected)
            assert isinstance(row[k], torch.nn.Identity)
            for i in range(k + 1, len(widths)):  # lower resolution: 1×1 conv, then repeat each pixel 2^(i−k) times
                factor = 2 ** (i - k)
                aligned = row[i].align(streams[i])
                upsampled = aligned.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
                assert torch.equal(row[i](streams[i]), upsampled)
                assert row[i].align.conv.kernel_size == (1, 1) and row[i].align.conv.out_channels == widths[k]
            for i in range(k):  # higher resolution: k − i strided 3×3 convs, the width changes at the last
                steps = list(row[i])
                assert len(steps) == k - i
                assert all(step.conv.stride == (2, 2) and step.conv.kernel_size == (3, 3) for step in steps)
                assert [step.conv.out_channels for step in steps] == [widths[i]] * (k - i - 1) + [widths[k]]
                assert [hasattr(step, "act") for step in steps] == [True] * (k - i - 1) + [False]


def test_exchange_unit_can_keep_only_the_highest_resolution():
    unit = ExchangeUnit((4, 8, 16, 32), num_outputs=1)
    streams = [torch.randn(1, c, 16 // 2**k, 16 // 2**k) for k, c in enumerate((4, 8, 16, 32))]
    (only,) = unit(streams)
    assert only.shape == streams[0].shape


@pytest.mark.heavy
def test_input_sizes_the_fusion_takes_are_timms():
    """The streams must halve exactly: ceil(H/4) a multiple of 8. timm fails inside the network for other sizes;
    ours refuses them up front with a ValueError that says what fits."""
    torch.manual_seed(0)
    reference = timm.create_model("hrnet_w18_small").eval()
    ours = paperzoo.create_model("hrnet_w18_small").eval()
    for size in (28, 29, 32, 33, 48, 60, 61, 64):
        x = torch.randn(1, 3, size, 64)
        with torch.no_grad():
            try:
                reference(x)
                timm_takes_it = True
            except RuntimeError:
                timm_takes_it = False
            if timm_takes_it:
                assert torch.isfinite(ours(x)).all()
            else:
                with pytest.raises(ValueError, match=r"^hrnet_w18_small expects .*\(N, 3, H, W\)"):
                    ours(x)
        assert timm_takes_it == (size >= 29 and math.ceil(size / 4) % 8 == 0)
    assert ours.min_input_size == 29


# --- features_only --------------------------------------------------------------------------------------------

@pytest.mark.heavy
def test_features_only_equals_timms_feature_extractor():
    """timm's HRNet features: the stem's first convolution (stride 2) and the four "increase" outputs."""
    torch.manual_seed(0)
    reference = randomize_weights(timm.create_model("hrnet_w18_small", features_only=True)).eval()
    ours = paperzoo.create_model("hrnet_w18_small", features_only=True).eval()
    paperzoo.load_weights(ours, reference.state_dict(), source="timm")
    assert [(i.channels, i.stride) for i in ours.feature_info] == list(
        zip(reference.feature_info.channels(), reference.feature_info.reduction(), strict=True))
    x = torch.randn(1, 3, 160, 192)
    with torch.no_grad():
        for feature, expected in zip(ours(x), reference(x), strict=True):
            assert_close_rel(feature, expected)


def test_features_only_for_the_stem_alone_builds_only_the_stem():
    model = paperzoo.create_model("hrnet_w18_small", features_only=True, out_indices=(0,)).eval()
    assert {name.split(".")[:2] == ["stem", "conv1"] for name, _ in model.named_parameters()} == {True}
    with torch.no_grad():
        (stem,) = model(torch.randn(1, 3, 64, 64))
    assert stem.shape == (1, 64, 32, 32) and model.feature_info == [(64, 2, "stem.conv1")]


# --- the pose network -----------------------------------------------------------------------------------------

def test_pose_parameter_count_is_the_authors_configuration():
    """The paper's 28.5M for HRNet-W32 at 256x192, derived from timm's HRNet-W32 body (the same streams): without
    the classifier's head, without the last fusion's outputs to the three lower resolutions, plus the 1×1 heatmap
    convolution (32 × 17 weights and 17 biases)."""
    pose = meta("hrnet_w32_pose")
    with torch.device("meta"):
        body = timm.create_model("hrnet_w32", head="")
    dropped = sum(p.numel() for row in body.stage4[-1].fuse_layers[1:] for p in row.parameters())
    expected = count_parameters(body) - dropped + 32 * 17 + 17
    assert count_parameters(pose) == expected == 28_536_113
    assert abs(expected - 28_500_000) <= 50_000  # Table 1 of the pose paper: 28.5M
    assert len(pose.stage4.hr_modules[-1].fusion.resample) == 1
    assert all(len(m.fusion.resample) == 4 for m in pose.stage4.hr_modules[:-1])


def test_pose_network_gives_17_heatmaps_at_a_quarter_resolution():
    torch.manual_seed(0)
    model = paperzoo.create_model("hrnet_w32_pose").eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        heatmaps = model(x)
    assert heatmaps.shape == (2, 17, 16, 24)
    check_output_structure("hrnet_w32_pose", model, x, heatmaps)  # the contract's keypoint-detection branch


def test_every_pose_parameter_learns_from_the_heatmap_loss():
    """A narrow, shallow PoseHRNet (same structure: four streams, the last fusion to the highest resolution only)."""
    torch.manual_seed(0)
    model = PoseHRNet(width=4, stage1_width=4, stage1_blocks=1, modules_per_stage=(1, 1, 2), blocks_per_stream=1,
                      num_keypoints=5).train()
    heatmaps = model(torch.randn(2, 3, 64, 96))
    keypoints = torch.rand(2, 5, 2) * torch.tensor([96.0, 64.0])
    target, weight = gaussian_heatmaps(keypoints, heatmap_size=(16, 24))
    model.loss(heatmaps, target, weight).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_pose_network_rejects_bad_input():
    model = meta("hrnet_w32_pose")
    for x in (torch.zeros(2, 4, 256, 192), torch.zeros(3, 256, 192), torch.zeros(2, 3, 28, 28),
              torch.zeros(2, 3, 256, 200)):
        with pytest.raises(ValueError, match=r"^hrnet_w32_pose expects a float tensor of shape \(N, 3, H, W\)"):
            model(x)


def test_loss_is_the_mean_squared_error_and_ignores_unlabelled_keypoints():
    torch.manual_seed(0)
    prediction, target = torch.randn(2, 3, 8, 6), torch.rand(2, 3, 8, 6)
    assert torch.equal(PoseHRNet.loss(prediction, target), F.mse_loss(prediction, target))
    assert PoseHRNet.loss(target, target) == 0
    weight = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    spoiled = prediction.clone()
    spoiled[0, 1] += 100.0  # an unlabelled keypoint's error does not count
    spoiled[1, 2] -= 100.0
    weighted = PoseHRNet.loss(prediction, target, weight)
    assert torch.allclose(PoseHRNet.loss(spoiled, target, weight), weighted)
    assert torch.equal(PoseHRNet.loss(prediction, target, weight[..., None]), weighted)  # the authors' (N, K, 1)
    # The authors' JointsMSELoss: per keypoint 0.5 · MSE over (N, h·w) of the weighted maps, averaged over keypoints.
    authors = sum(0.5 * F.mse_loss(prediction[:, j] * weight[:, j, None, None], target[:, j] * weight[:, j, None, None])
                  for j in range(3)) / 3
    assert torch.allclose(weighted, 2 * authors)


def test_gaussian_targets_peak_at_the_rounded_keypoint_with_sigma_2():
    keypoints = torch.tensor([[[41.0, 22.5], [3.0, 2.0]]])  # (x, y) in input pixels, stride 4
    heatmaps, weight = gaussian_heatmaps(keypoints, heatmap_size=(16, 12))
    assert heatmaps.shape == (1, 2, 16, 12) and torch.equal(weight, torch.ones(1, 2))
    peak = heatmaps[0, 0]
    y, x = divmod(int(peak.argmax()), 12)
    assert (x, y) == (10, 6) and peak[y, x] == 1  # 41 / 4 = 10.25 → 10, 22.5 / 4 = 5.6 → 6
    assert torch.isclose(peak[y, x + 1], torch.tensor(math.exp(-1 / 8)))  # exp(−1 / 2σ²), σ = 2
    assert torch.isclose(peak[y + 2, x - 1], torch.tensor(math.exp(-5 / 8)))
    assert peak[y, x - 1] == peak[y, x + 1] and peak[y - 2, x] == peak[y + 2, x]
    assert peak[y, x - 6] > 0 and peak[y + 6, x] > 0  # the window reaches 3σ = 6 pixels, and no further
    assert peak[y, :x - 6].abs().sum() == 0 and peak[y + 7:].abs().sum() == 0
    corner = heatmaps[0, 1]  # (3, 2) / 4 → (1, 1): the Gaussian is cut by the border
    assert corner[1, 1] == 1 and corner[0, 0] == math.exp(-2 / 8)


def test_gaussian_targets_match_the_authors_window_drawing():
    """The authors' generate_target: a (6σ+1)² window of exp(−d²/2σ²) pasted around the rounded keypoint."""
    torch.manual_seed(0)
    h, w, sigma = 16, 12, 2
    keypoints = torch.rand(3, 5, 2) * torch.tensor([w * 4.0 - 2, h * 4.0 - 2])  # centres on the map
    heatmaps, weight = gaussian_heatmaps(keypoints, heatmap_size=(h, w), sigma=sigma)
    reach = 3 * sigma
    window = torch.arange(-reach, reach + 1, dtype=torch.float32)
    patch = torch.exp(-(window[None, :] ** 2 + window[:, None] ** 2) / (2 * sigma**2))
    for n in range(3):
        for k in range(5):
            mu_x, mu_y = (int(c / 4 + 0.5) for c in keypoints[n, k].tolist())
            expected = torch.zeros(h + 2 * reach, w + 2 * reach)  # padded so that the window always fits
            expected[mu_y:mu_y + 2 * reach + 1, mu_x:mu_x + 2 * reach + 1] = patch
            assert torch.equal(heatmaps[n, k], expected[reach:reach + h, reach:reach + w])
    assert torch.equal(weight, torch.ones(3, 5))


def test_gaussian_targets_of_unlabelled_or_distant_keypoints_are_empty_with_weight_0():
    keypoints = torch.tensor([[[20.0, 20.0], [20.0, 20.0], [-40.0, 20.0], [-20.0, 20.0], [20.0, 200.0]]])
    visible = torch.tensor([[1, 0, 1, 1, 1]])
    heatmaps, weight = gaussian_heatmaps(keypoints, heatmap_size=(16, 12), visible=visible)
    # -40 / 4 = -10: the window (±6) misses the map; -20 / 4 = -5: it reaches columns 0 and 1.
    assert weight.tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0]]
    assert [bool(m.any()) for m in heatmaps[0]] == [True, False, False, True, False]


def test_keypoints_from_heatmaps_inverts_the_targets_and_shifts_a_quarter_pixel():
    keypoints = torch.tensor([[[8.0, 12.0], [40.0, 28.0], [0.0, 60.0]]])  # multiples of the stride 4
    heatmaps, _ = gaussian_heatmaps(keypoints, heatmap_size=(16, 12))
    decoded, scores = keypoints_from_heatmaps(heatmaps)
    assert torch.equal(decoded, keypoints) and torch.equal(scores, torch.ones(1, 3))
    skewed = torch.zeros(1, 1, 16, 12)
    skewed[0, 0, 5, 5], skewed[0, 0, 5, 6], skewed[0, 0, 4, 5] = 1.0, 0.6, 0.2  # right and up neighbours higher
    decoded, _ = keypoints_from_heatmaps(skewed)
    assert decoded.tolist() == [[[4 * 5.25, 4 * 4.75]]]
