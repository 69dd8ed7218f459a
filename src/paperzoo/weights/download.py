"""Reading a published weights file from the standard caches, downloading it first if it is not there.

Both downloaders write to a temporary name and rename only a complete file, so an interrupted download leaves
nothing a later run would trust: torch.hub removes its ``.partial`` file, and refuses (and removes) a file whose
sha256 does not start with the 8 hex digits in its name; ``huggingface_hub`` keeps an ``.incomplete`` blob that it
resumes and never reads as the file. Every failure becomes one ``ValueError`` line saying what to do.
"""

from __future__ import annotations

import os
import pickle
import urllib.error
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch

from paperzoo.interop import read_state_dict

if TYPE_CHECKING:
    from paperzoo.weights import PublishedWeights

StateDict = dict[str, torch.Tensor]


def torch_hub_path(url: str) -> Path:
    """Where torch.hub (and torchvision) keep the file of ``url``: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_state_dict(weights: PublishedWeights) -> StateDict:
    """The tensors of ``weights``' file, in its library's layout (downloaded once, then read from the cache)."""
    if weights.url:
        # torchvision names its files by their sha256 and checks it; timm's few URL files are read unchecked, as timm
        # reads them (the digits in some of their names are not a hash prefix).
        return _from_url(weights.url, check_hash=weights.source == "torchvision")
    return read_state_dict(_from_hub(weights.hub_repo, weights.hub_file))


def _from_url(url: str, check_hash: bool) -> StateDict:
    path = torch_hub_path(url)
    try:
        state_dict = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=check_hash,
                                                        weights_only=True, progress=True)
    except RuntimeError as err:
        if "invalid hash value" not in str(err):
            raise
        raise ValueError(f"the file downloaded from {url} is corrupt (its sha256 does not start with the digits in "
                         f"its name) and was not kept; try again, or place a good copy at {path}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ValueError(f"cannot download {url} ({reason}); with no network, place that file at {path}") from None
    except pickle.UnpicklingError:  # torch.load with weights_only=True refusing a pickle that would run code
        raise ValueError(f"{path} is not a plain tensor file (torch.load with weights_only=True refused it); "
                         "delete it to download it again") from None
    return dict(state_dict)


# A Hub repository holds its weights as model.safetensors, pytorch_model.bin or both (older repositories have only
# the .bin written by torch.save; newer ones only safetensors). transformers and timm try one, then the other; so do
# we, so that a repository converted (or not yet converted) since the table was written still loads. The .bin is
# read with weights_only=True like every other file.
_HUB_ALTERNATIVES = {"model.safetensors": "pytorch_model.bin", "pytorch_model.bin": "model.safetensors"}


class _MissingHubFile(Exception):
    """The repository has no such file."""


class _NotCached(Exception):
    """Offline (or no network), and the file is not in the Hub cache."""


def _from_hub(repo: str, filename: str) -> Path:
    """The path of ``filename`` of the Hub repository ``repo`` in the Hub cache (downloaded if needed), or of its
    alternative format where the repository (or the offline cache) has only that; the error names ``filename``."""
    try:
        return _hub_file(repo, filename)
    except (_MissingHubFile, _NotCached) as missing:
        if filename in _HUB_ALTERNATIVES:
            try:
                return _hub_file(repo, _HUB_ALTERNATIVES[filename])
            except (_MissingHubFile, _NotCached):
                pass
        raise ValueError(str(missing)) from None


def _hub_file(repo: str, filename: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError:
        raise ImportError('weights from the Hugging Face Hub need huggingface_hub: pip install "paperzoo[hub]"'
                          ) from None
    try:
        return Path(hf_hub_download(repo, filename, library_name="paperzoo"))
    except LocalEntryNotFoundError:  # offline (HF_HUB_OFFLINE=1 or no network) and not in the cache
        from huggingface_hub.constants import HF_HUB_CACHE

        folder = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        raise _NotCached(f"cannot download {filename} from the Hub repository {repo} and it is not in the cache "
                         f"({folder}); connect once, or run `hf download {repo} {filename}` where there is a "
                         "network and copy the cache folder here") from None
    except EntryNotFoundError:
        raise _MissingHubFile(f"the Hub repository {repo} has no file {filename}") from None
