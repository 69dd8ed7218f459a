"""GoogLeNet and Inception v3: what the generic tests do not cover.

The auxiliary classifiers (off by default, so the contract and parity tests never build them): their parameter
count, their training-mode outputs against torchvision's with converted weights, the paper's loss built from
them and its gradient; ``transform_input``; the smallest inputs, found against torchvision's models.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

import paperzoo
from conftest import assert_close_rel, randomize_batchnorm
from paperzoo.measure import count_parameters

REFERENCES = {"googlenet": torchvision.models.googlenet, "inception_v3": torchvision.models.inception_v3}


def reference_and_ours(name: str, **kwargs) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A torchvision model with random weights and BatchNorm statistics, and ours with its converted weights.

    The weights are redrawn with He's fan-in scale: under torchvision's own initialisation (sigma = 0.01) and
    random BatchNorm statistics, GoogLeNet's eval output depends on its input by about 1e-7 of its size, below
    the parity tolerance, so a comparison could not tell whether the input is processed correctly.
    """
    torch.manual_seed(0)
    reference = REFERENCES[name](init_weights=True, **kwargs)
    for module in reference.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    randomize_batchnorm(reference)
    ours = paperzoo.load_weights(paperzoo.create_model(name, **kwargs), reference.state_dict(), source="torchvision")
    return reference, ours


def assert_depends_on_the_input(outputs: torch.Tensor) -> None:
    """The examples of a batch give clearly different outputs, so a parity check on them sees the input."""
    assert (outputs[0] - outputs[1]).abs().max() > 1e-2 * outputs.abs().max(), "the output ignores the input"


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_parameter_count_with_the_auxiliary_classifiers_equals_torchvision(name):
    with torch.device("meta"):
        reference = REFERENCES[name](aux_logits=True, init_weights=False)
        ours = paperzoo.create_model(name, aux_logits=True)
        without = paperzoo.create_model(name)
    assert count_parameters(ours) == count_parameters(reference)
    assert count_parameters(without) == paperzoo.model_card(name).params < count_parameters(ours)


def run_in_training_mode(model: torch.nn.Module, x: torch.Tensor, seed: int = 1, grad: bool = True):
    """A training-mode forward pass with the dropout masks drawn from a fixed seed: both models draw their masks
    in the same order and of the same sizes, so equal weights give equal outputs, dropout included."""
    torch.manual_seed(seed)
    with torch.set_grad_enabled(grad):
        return model.train()(x)


@pytest.mark.heavy
def test_googlenet_auxiliary_outputs_equal_torchvision_and_give_the_papers_loss():
    reference, ours = reference_and_ours("googlenet", aux_logits=True)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    expected = run_in_training_mode(reference, x, grad=False)  # GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
    logits, (aux_4a, aux_4d) = output = run_in_training_mode(ours, x)
    assert_depends_on_the_input(expected.logits)
    assert_close_rel(logits, expected.logits)
    assert_close_rel(aux_4a, expected.aux_logits1)
    assert_close_rel(aux_4d, expected.aux_logits2)

    # §5: the auxiliary losses are added with a discount weight of 0.3.
    target = torch.tensor([0, 5, 999, 42])
    loss = ours.loss(output, target)
    paper = (F.cross_entropy(expected.logits, target)
             + 0.3 * (F.cross_entropy(expected.aux_logits1, target) + F.cross_entropy(expected.aux_logits2, target)))
    assert loss.item() == pytest.approx(paper.item(), rel=1e-5)
    loss.backward()
    for pname, p in ours.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{pname} received no gradient from the loss"

    # Eval mode: the auxiliary classifiers are discarded and the logits come alone.
    with torch.no_grad():
        ours.eval()
        reference.eval()
        assert_depends_on_the_input(reference(x))
        assert_close_rel(ours(x), reference(x))
        assert ours.loss(ours(x), target).item() == pytest.approx(F.cross_entropy(reference(x), target).item(),
                                                                  rel=1e-5)


@pytest.mark.heavy
def test_inception_v3_auxiliary_output_equals_torchvision_and_gives_the_training_loss():
    reference, ours = reference_and_ours("inception_v3", aux_logits=True)
    x = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(0))  # the auxiliary head's smallest
    expected = run_in_training_mode(reference, x, grad=False)  # InceptionOutputs(logits, aux_logits)
    logits, aux = output = run_in_training_mode(ours, x)
    assert_depends_on_the_input(expected.logits)
    assert_close_rel(logits, expected.logits)
    assert_close_rel(aux, expected.aux_logits)

    # §7: label smoothing, H(q', p) = (1 − ε) H(q, p) + ε H(u, p) with u uniform and ε = 0.1; the auxiliary
    # loss weighs 0.4 (Google's released training code).
    target = torch.tensor([3, 998])

    def smoothed(z: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(z, dim=1)
        return (0.9 * F.nll_loss(log_p, target) - 0.1 * log_p.mean(dim=1).mean())

    loss = ours.loss(output, target)
    assert loss.item() == pytest.approx((smoothed(expected.logits) + 0.4 * smoothed(expected.aux_logits)).item(),
                                        rel=1e-5)
    loss.backward()
    for pname, p in ours.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{pname} received no gradient from the loss"


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_training_mode_returns_the_auxiliary_logits_only_when_built(name):
    size = paperzoo.model_card(name).input.shape[1]
    with torch.device("meta"):  # shapes only
        x = torch.randn(2, 3, size, size)
        plain = paperzoo.create_model(name).train()
        assert isinstance(plain(x), torch.Tensor)
        model = paperzoo.create_model(name, aux_logits=True, num_classes=10).train()
        logits, aux = model(x)
        auxiliaries = aux if name == "googlenet" else (aux,)
        assert len(auxiliaries) == (2 if name == "googlenet" else 1)
        assert logits.shape == (2, 10) and all(a.shape == (2, 10) for a in auxiliaries)

        model.reset_classifier(7)  # resets the auxiliary classifiers too
        logits, aux = model(x)
        assert logits.shape == (2, 7) and all(a.shape == (2, 7) for a in (aux if name == "googlenet" else (aux,)))
        assert isinstance(model.eval()(x), torch.Tensor)


@pytest.mark.heavy
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_transform_input_equals_torchvisions(name):
    """The re-normalisation torchvision applies for its ImageNet weights; off by default, as in torchvision."""
    reference, ours = reference_and_ours(name, transform_input=True, aux_logits=False)
    x = torch.randn(2, 3, 80, 80, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = ours.eval()(x)
        assert_depends_on_the_input(out)
        assert_close_rel(out, reference.eval()(x))
        ours.transform_input = False
        assert not torch.allclose(out, ours(x)), "transform_input changed nothing"
    with pytest.raises(ValueError, match="in_chans=3"):
        paperzoo.create_model(name, transform_input=True, in_chans=1)


@pytest.mark.parametrize("name, aux_train", [("googlenet", False), ("googlenet", True), ("inception_v3", False),
                                             ("inception_v3", True)])
def test_smallest_input_is_torchvisions(name, aux_train):
    """min_input_size (and Inception v3's aux_min_input_size, for training with the auxiliary classifier) is
    the smallest size torchvision's model takes: one pixel less fails there and raises a ValueError here."""
    with torch.device("meta"):  # shape inference only
        reference = REFERENCES[name](aux_logits=aux_train, init_weights=False).train(aux_train)
        ours = paperzoo.create_model(name, aux_logits=aux_train).train(aux_train)
        smallest = getattr(ours, "aux_min_input_size", ours.min_input_size) if aux_train else ours.min_input_size
        if aux_train and name == "inception_v3":
            assert smallest == 299 > ours.min_input_size
        ours(torch.randn(2, 3, smallest, smallest))
        reference(torch.randn(2, 3, smallest, smallest))
        too_small = torch.randn(2, 3, smallest - 1, smallest - 1)
        with pytest.raises(RuntimeError):
            reference(too_small)
        with pytest.raises(ValueError, match=f"H, W >= {smallest}"):
            ours(too_small)


def test_googlenet_can_build_the_papers_5x5_branch():
    with torch.device("meta"):
        ours = paperzoo.create_model("googlenet", kernel_size_5x5=5)
        default = paperzoo.create_model("googlenet")
    assert ours.inception3a.branch_5x5[1].conv.kernel_size == (5, 5)
    assert default.inception3a.branch_5x5[1].conv.kernel_size == (3, 3)  # torchvision's, vision#906
    # 16 more weights per input-output channel pair of every "5x5" convolution (Table 1's #5x5 reduce, #5x5).
    pairs = sum(m.branch_5x5[1].conv.in_channels * m.branch_5x5[1].conv.out_channels for m in ours.modules()
                if hasattr(m, "branch_5x5"))
    assert count_parameters(ours) - count_parameters(default) == 16 * pairs
