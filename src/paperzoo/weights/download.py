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


def _from_hub(repo: str, filename: str) -> Path:
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
        raise ValueError(f"cannot download {filename} from the Hub repository {repo} and it is not in the cache "
                         f"({folder}); connect once, or run `hf download {repo} {filename}` where there is a "
                         "network and copy the cache folder here") from None
    except EntryNotFoundError:
        raise ValueError(f"the Hub repository {repo} has no file {filename}") from None
