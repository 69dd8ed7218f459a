"""load_weights: files in both formats, no pickle execution, strictness and its error messages."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import paperzoo
from paperzoo.interop import WeightsMismatchError, read_state_dict


def resnet18(seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return paperzoo.create_model("resnet18", **kwargs).eval()


def same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
def test_round_trip_through_a_file(tmp_path, suffix):
    trained = resnet18(seed=0)
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in trained.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    fresh = resnet18(seed=1)
    assert not same_outputs(fresh, trained)
    assert paperzoo.load_weights(fresh, path) is fresh
    assert same_outputs(fresh, trained)


def test_a_checkpoint_holding_the_weights_under_a_key_is_unwrapped(tmp_path):
    trained = resnet18(seed=0)
    torch.save({"epoch": 3, "model": trained.state_dict()}, tmp_path / "checkpoint.pt")
    assert same_outputs(paperzoo.load_weights(resnet18(seed=1), tmp_path / "checkpoint.pt"), trained)


class _PlantsAFile:
    """An object whose unpickling would run code: here, create a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_runs_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"conv1.weight": _PlantsAFile(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        paperzoo.load_weights(resnet18(seed=0), tmp_path / "evil.pt")
    assert not marker.exists(), "the pickle's code ran"


def test_unreadable_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.safetensors")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="expected .safetensors"):
        read_state_dict(tmp_path / "weights.npz")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        read_state_dict(tmp_path / "list.pt")


def test_mismatch_lists_missing_unexpected_and_conflicting_keys():
    weights = resnet18(seed=0).state_dict()
    weights["extra.weight"] = torch.zeros(1)
    del weights["stages.conv5_x.1.conv2.norm.running_var"]
    model = resnet18(seed=1, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsMismatchError) as info:
        paperzoo.load_weights(model, weights)
    message = str(info.value)
    assert "1 missing keys: stages.conv5_x.1.conv2.norm.running_var" in message
    assert "1 unexpected keys: extra.weight" in message
    assert "fc.weight: weights (1000, 512), model (10, 512)" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "nothing may be half-loaded"


def test_another_architecture_is_rejected_with_its_keys():
    with pytest.raises(WeightsMismatchError, match=r"missing keys: .*stages\.conv2_x\.2"):
        paperzoo.load_weights(paperzoo.create_model("resnet34"), resnet18(seed=0).state_dict())


def test_sources_and_converters_are_checked():
    model = paperzoo.create_model("alexnet")
    with pytest.raises(ValueError, match="unknown source 'keras'"):
        paperzoo.load_weights(model, {}, source="keras")
    with pytest.raises(ValueError, match=r"no timm converter for AlexNet; timm converters exist for: .*\bResNet\b"):
        paperzoo.load_weights(model, {}, source="timm")


def test_assign_fills_a_model_built_on_the_meta_device():
    trained = resnet18(seed=0)
    with torch.device("meta"):
        empty = paperzoo.create_model("resnet18")
    paperzoo.load_weights(empty, trained.state_dict(), assign=True)
    assert not any(p.is_meta for p in empty.parameters())
    assert same_outputs(empty.eval(), trained)
