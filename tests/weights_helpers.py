"""Shared by tests/test_weights.py and tests/test_predict.py: temporary weight caches, and reference weights placed
in them as the references publish them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from paperzoo.weights import get_weights
from paperzoo.weights.download import torch_hub_path


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty torch.hub and Hugging Face caches under ``tmp_path``; the Hub offline (nothing leaves this machine)."""
    import huggingface_hub.constants as hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    return tmp_path


def place_in_torch_cache(model: torch.nn.Module, name: str, tag: str) -> Path:
    """Save ``model``'s weights in torch.hub's cache under the real file name of ``name``'s ``tag``, where
    torchvision's own builder finds them too (a cached file is not hashed again, by torch.hub or by us)."""
    path = torch_hub_path(get_weights(name, tag).url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def place_in_hub_cache(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """Files laid out as ``huggingface_hub`` keeps a downloaded repository: ``models--<org>--<name>/snapshots/
    <revision>/<file>`` and ``refs/main`` naming the revision."""
    folder = cache / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    revision = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


def randomize_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so that a forgotten buffer or epsilon shows in the outputs."""
    generator = torch.Generator().manual_seed(0)
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
        elif name.endswith("running_var"):
            buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
    return model


def photo() -> torch.Tensor:
    from sklearn.datasets import load_sample_image

    return torch.from_numpy(load_sample_image("china.jpg")).permute(2, 0, 1).contiguous()  # uint8 (3, 427, 640)
