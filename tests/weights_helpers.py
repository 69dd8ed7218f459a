"""Shared by tests/test_weights.py, tests/test_predict.py and tests/test_train_speech.py: temporary weight
caches, and reference weights placed in them as the references publish them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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


def small_published_wav2vec2_ctc(monkeypatch: pytest.MonkeyPatch) -> Any:
    """wav2vec2_base_ctc's published weights made small (``create_model(pretrained=True)`` builds this size), and
    the transformers configuration of that size, whose Wav2Vec2ForCTC the test saves into the Hub cache."""
    import transformers

    from paperzoo.weights import _published

    small = dict(hidden_size=32, num_layers=2, num_heads=4, ffn_dim=64, feature_channels=32, position_kernel_size=16,
                 position_groups=4)
    monkeypatch.setitem(_published.PUBLISHED, "wav2vec2_base_ctc",
                        [dict(row, model_kwargs=small) for row in _published.PUBLISHED["wav2vec2_base_ctc"]])
    return transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                                       num_conv_pos_embedding_groups=4)
