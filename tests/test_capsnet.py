"""CapsNet: what the generic contract tests do not see. The squash (eq. 1), routing by agreement (Procedure 1)
against a loop-by-loop transcription of the procedure, what more iterations do to the coupling coefficients,
the margin loss (eq. 4) by hand, the total loss with the reconstruction, the parameter count by layer (the
paper's 8.2M and 6.8M), the exact 28×28 input, the auxiliary-head convention, and learning real digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import paperzoo
from paperzoo.measure import count_parameters
from paperzoo.models.classification.capsnet import CapsNet, DynamicRouting, margin_loss, squash
from paperzoo.training.data import digits
from paperzoo.training.loop import TrainConfig, train


def test_squash_maps_lengths_into_the_unit_interval_and_keeps_the_direction():
    torch.manual_seed(0)
    scales = torch.tensor([0.0, 1e-3, 0.1, 0.5, 1.0, 2.0, 10.0, 1e3]).view(-1, 1)
    s = torch.randn(8, 16) * scales / 4  # ‖s‖ spans 0 … ~1000
    v = squash(s)
    s_length, v_length = s.norm(dim=-1), v.norm(dim=-1)
    assert (v_length >= 0).all() and (v_length < 1).all()
    # eq. 1 written out: ‖v‖ = ‖s‖² / (1 + ‖s‖²)
    torch.testing.assert_close(v_length, s_length.pow(2) / (1 + s_length.pow(2)))
    nonzero = s_length > 0
    cosine = F.cosine_similarity(v[nonzero], s[nonzero], dim=-1)
    torch.testing.assert_close(cosine, torch.ones_like(cosine))
    assert torch.equal(v[0], torch.zeros(16))  # a zero vector stays zero, with no 0/0
    # short vectors shrink to almost nothing (length ≈ ‖s‖²), long ones approach 1
    assert v_length[1] < 1e-5 and v_length[-1] > 0.999
    s0 = torch.zeros(3, 8, requires_grad=True)
    squash(s0).sum().backward()
    assert torch.isfinite(s0.grad).all()


def procedure_1(u_hat: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Procedure 1 of the paper, transcribed line by line with explicit loops over i and j (one example)."""
    children, parents, _ = u_hat.shape
    b = [[0.0] * parents for _ in range(children)]  # for all i, j: b_ij ← 0
    for _ in range(iterations):
        c = [torch.softmax(torch.tensor(b[i], dtype=u_hat.dtype), dim=0) for i in range(children)]  # eq. 3
        s = [sum(c[i][j] * u_hat[i, j] for i in range(children)) for j in range(parents)]  # eq. 2
        v = [s[j] * s[j].norm() / (1 + s[j].norm() ** 2) for j in range(parents)]  # eq. 1
        for i in range(children):
            for j in range(parents):
                b[i][j] = b[i][j] + float(u_hat[i, j] @ v[j])  # b_ij ← b_ij + û_j|i · v_j
    return torch.stack(v), torch.stack(c)


@pytest.mark.parametrize("iterations", [1, 2, 3, 5])
def test_vectorised_routing_is_procedure_1(iterations):
    torch.manual_seed(iterations)
    u_hat = torch.randn(2, 7, 4, 5, dtype=torch.float64)  # (N, children, parents, dim)
    v, c = DynamicRouting(iterations)(u_hat)
    assert v.shape == (2, 4, 5) and c.shape == (2, 7, 4)
    for n in range(2):
        v_ref, c_ref = procedure_1(u_hat[n], iterations)
        torch.testing.assert_close(v[n], v_ref)
        torch.testing.assert_close(c[n], c_ref)


def agreeing_predictions(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Children whose predictions for one "true" parent agree (a shared direction per parent, plus noise) and
    whose predictions for the other parents are noise: the situation routing by agreement is made for."""
    children, parents, dim = 60, 5, 8
    true_parent = torch.arange(children) % parents
    directions = F.normalize(torch.randn(parents, dim, generator=generator), dim=-1)
    u_hat = 0.3 * torch.randn(1, children, parents, dim, generator=generator)
    u_hat[0, torch.arange(children), true_parent] += directions[true_parent]
    return u_hat, true_parent


def test_more_iterations_concentrate_the_coupling_on_the_agreeing_parent():
    u_hat, true_parent = agreeing_predictions(torch.Generator().manual_seed(0))
    entropies, on_true_parent = [], []
    for iterations in range(1, 6):
        _, c = DynamicRouting(iterations)(u_hat)
        torch.testing.assert_close(c.sum(dim=2), torch.ones(1, 60))  # c_i is a distribution over the parents
        assert (c > 0).all()
        entropies.append(-(c * c.log()).sum(dim=2).mean().item())
        on_true_parent.append(c[0, torch.arange(60), true_parent].mean().item())
    # the first iteration routes uniformly (b = 0): c_ij = 1 / parents, maximal entropy
    assert entropies[0] == pytest.approx(math.log(5)) and on_true_parent[0] == pytest.approx(0.2)
    assert all(a > b for a, b in zip(entropies, entropies[1:], strict=False)), entropies
    assert all(a < b for a, b in zip(on_true_parent, on_true_parent[1:], strict=False)), on_true_parent
    assert on_true_parent[2] > 0.5  # three iterations, the paper's choice, already send most of it there


def test_capsnet_routing_iterations_keyword_and_coupling():
    torch.manual_seed(0)
    model = paperzoo.create_model("capsnet", num_routing_iterations=1).eval()
    assert model.digit_caps.routing.num_iterations == 1
    x = digits("test", image_size=28)[:4][0]
    with torch.no_grad():
        u_hat = model.digit_caps.predictions(model.forward_features(x))  # (4, 1152, 10, 16)
        _, c1 = model.digit_caps.routing(u_hat)
        model.digit_caps.routing.num_iterations = 3
        v3, c3 = model.digit_caps.routing(u_hat)
        scores = model(x)
    assert u_hat.shape == (4, 1152, 10, 16)
    torch.testing.assert_close(c1, torch.full_like(c1, 0.1))  # one iteration: uniform coupling
    torch.testing.assert_close(c3.sum(dim=2), torch.ones(4, 1152))
    entropy = -(c3 * c3.log()).sum(dim=2).mean()
    assert entropy < math.log(10) - 1e-3
    torch.testing.assert_close(scores, v3.norm(dim=-1))  # the class scores are the digit capsules' lengths
    with pytest.raises(ValueError, match="at least one iteration"):
        DynamicRouting(0)


def test_margin_loss_is_equation_4_by_hand():
    lengths = torch.tensor([[0.95, 0.05, 0.50], [0.30, 0.20, 0.10]])
    labels = torch.tensor([0, 1])
    # example 1: present 0 (0.95 > m+ = 0.9); absent 0.5·(0 + (0.50 − 0.1)²) = 0.08
    # example 2: present (0.9 − 0.2)² = 0.49; absent 0.5·((0.30 − 0.1)² + 0) = 0.02; total 0.51
    assert margin_loss(lengths, labels).item() == pytest.approx((0.08 + 0.51) / 2)
    # the same through the formula with other constants
    t = F.one_hot(labels, 3).float()
    by_hand = (t * (0.8 - lengths).clamp(min=0) ** 2 + 0.25 * (1 - t) * (lengths - 0.2).clamp(min=0) ** 2)
    assert margin_loss(lengths, labels, m_plus=0.8, m_minus=0.2, absent_weight=0.25).item() == pytest.approx(
        by_hand.sum(1).mean().item())


def test_loss_is_margin_plus_0_0005_times_the_true_class_reconstruction_error():
    torch.manual_seed(0)
    model = CapsNet().train()
    images, labels = digits("test", image_size=28)[:3]
    loss = model.loss(images, labels)
    with torch.no_grad():
        v = model.digit_capsules(images)  # (3, 10, 16)
        mask = torch.zeros(3, 10, 1)
        mask[torch.arange(3), labels] = 1.0  # every capsule but the true class's masked out
        hidden = F.relu(model.decoder.fc2(F.relu(model.decoder.fc1((v * mask).flatten(1)))))
        reconstruction = torch.sigmoid(model.decoder.fc3(hidden)).view(3, 1, 28, 28)
        squared_error = ((reconstruction - images) ** 2).sum(dim=(1, 2, 3)).mean()
        expected = margin_loss(v.norm(dim=-1), labels) + 0.0005 * squared_error
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    without_decoder = CapsNet(decoder=False)
    with torch.no_grad():
        assert torch.equal(without_decoder.loss(images, labels), margin_loss(without_decoder(images), labels))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_training_forward_returns_the_class_scores_as_every_classifier():
    """Issue 21: the training-mode forward returned (scores, reconstructions), where a classifier returns logits;
    the decoder is reached through loss/training_loss, and reconstruct draws the longest capsule's digit."""
    torch.manual_seed(0)
    model = CapsNet().train()
    x = digits("test", image_size=28)[:2][0]
    scores = model(x)
    assert isinstance(scores, torch.Tensor) and scores.shape == (2, 10)
    with torch.no_grad():
        v = model.digit_capsules(x)
        torch.testing.assert_close(scores, v.norm(dim=-1))  # ‖v_j‖
        reconstructions = model.reconstruct(v)
        assert reconstructions.shape == (2, 1, 28, 28) and ((reconstructions > 0) & (reconstructions < 1)).all()
        torch.testing.assert_close(reconstructions, model.reconstruct(v, scores.argmax(1)))
        model.eval()
        assert torch.equal(model(x), scores)  # eval: the same scores


def test_parameter_count_by_layer_is_the_papers():
    with torch.device("meta"):
        model = paperzoo.create_model("capsnet")
        without_decoder = paperzoo.create_model("capsnet", decoder=False)
    parts = {name: count_parameters(module) for name, module in model.named_children()}
    # derived by hand from §4 and Figure 2 (see the module docstring)
    assert parts == {"conv1": 20_992, "primary_caps": 5_308_672, "digit_caps": 1_474_560, "decoder": 1_411_344}
    assert count_parameters(model) == 8_215_568 and count_parameters(without_decoder) == 6_804_224  # 8.2M, 6.8M
    assert model.digit_caps.weight.shape == (1152, 10, 16, 8)  # one W_ij per primary capsule and digit capsule
    assert list(model.digit_caps.routing.parameters()) == []  # b_ij and c_ij are not learned


@pytest.mark.parametrize("size", [27, 32])
def test_only_28x28_images_are_accepted(size):
    model = CapsNet().eval()
    with pytest.raises(ValueError) as info:
        model(torch.zeros(1, 1, size, size))
    message = str(info.value)
    assert message.startswith("capsnet expects a float tensor of shape (N, 1, H, W) with H = W = 28")
    assert f"(1, 1, {size}, {size})" in message and "6x6x32 primary capsules" in message


def test_reset_classifier_rebuilds_the_digit_capsules_and_the_decoder():
    torch.manual_seed(0)
    model = CapsNet()
    model.reset_classifier(5)
    assert model.digit_caps.weight.shape == (1152, 5, 16, 8) and model.decoder.fc1.in_features == 5 * 16
    x = torch.rand(2, 1, 28, 28)
    scores = model.train()(x)
    assert scores.shape == (2, 5) and model.reconstruct(model.digit_capsules(x)).shape == (2, 1, 28, 28)
    model.reset_classifier(0)
    assert model.digit_caps is None and model.decoder is None
    assert model(x).shape == (2, model.num_features) == (2, 1152 * 8)  # training mode too: no auxiliary head


@pytest.mark.heavy
def test_capsnet_learns_digits(tmp_path):
    """`paperzoo train capsnet` on scikit-learn's digits (1,438 images at 28×28) through the loop's own code path:
    the paper's loss (margin + 0.0005 × reconstruction, through ``training_loss``) and its recipe (Adam at
    TensorFlow's default learning rate), one epoch of batch 32, on a small CapsNet (64 Conv1 channels, 8 primary
    capsule types: routing from 8×6×6 = 288 primary capsules instead of 1,152, everything else as the paper,
    its reconstruction decoder included). Measured: 94.4% of the 359 held-out digits after the epoch (chance
    10%), in about 9 s of one CPU (user time; 13 s of wall time on a loaded machine); the full-size network
    learns as well but costs several times as much."""
    summary = train(TrainConfig("capsnet", epochs=1, batch_size=32, threads=1, out=str(tmp_path),
                                model_kwargs={"conv_channels": 64, "primary_capsule_types": 8}))
    assert summary["final_test_accuracy"] >= 0.90, summary
