"""One input check shared by every model, so that bad input fails early with a message that says what the
network expects and how to fix the call, instead of a shape error from deep inside a convolution.

Each check raises ``ValueError("<model> expects <what>; got <shape>: <what is wrong, how to fix it>")``.
"""

from __future__ import annotations

import torch


def check_image_batch(x: object, *, name: str, in_chans: int, min_size: int = 1, size: int | None = None) -> None:
    """Check a batch of images for a CNN: a float tensor of shape ``(N, in_chans, H, W)``, H, W ``>= min_size``.

    ``size``, if given, is the only H = W the network takes (a fully-connected network on the flattened pixels).
    """
    expected = f"{name} expects a float tensor of shape (N, {in_chans}, H, W)"
    if size is not None:
        expected += f" with H = W = {size}"
    elif min_size > 1:
        expected += f" with H, W >= {min_size}"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{expected}; got {type(x).__name__}: convert it with torch.as_tensor")
    shape = tuple(x.shape)
    problem = None
    if x.ndim == 3 and shape[0] == in_chans:
        problem = "the batch dimension is missing; add it with x.unsqueeze(0)"
    elif x.ndim != 4:
        problem = f"a {x.ndim}-d tensor; pass a 4-d batch of images (N, C, H, W)"
    elif shape[1] != in_chans:
        problem = (f"{shape[1]} channels; convert the images to {in_chans} channels, or build the model "
                   f"with in_chans={shape[1]}" + (" (a channels-last (N, H, W, C) array needs "
                                                  "x.permute(0, 3, 1, 2))" if shape[3] == in_chans else ""))
    elif not x.is_floating_point():
        problem = (f"dtype {str(x.dtype).removeprefix('torch.')}; convert with x.float() "
                   "(and scale and normalise as in training)")
    elif shape[0] == 0:
        problem = "an empty batch; pass at least one image"
    elif min(shape[2], shape[3]) < min_size:
        problem = f"an image of {shape[2]}x{shape[3]}; resize or pad it to at least {min_size}x{min_size}"
    elif size is not None and (shape[2], shape[3]) != (size, size):
        problem = f"an image of {shape[2]}x{shape[3]}; resize it to {size}x{size}"
    if problem is not None:
        raise ValueError(f"{expected}; got {shape}: {problem}")


def check_latent_batch(z: object, *, name: str, latent_dim: int) -> None:
    """Check a batch of latent vectors for a generator: a float tensor of shape ``(N, latent_dim)``."""
    expected = f"{name} expects a float tensor of shape (N, {latent_dim})"
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{expected}; got {type(z).__name__}: convert it with torch.as_tensor")
    shape = tuple(z.shape)
    problem = None
    if z.ndim == 1 and shape[0] == latent_dim:
        problem = "the batch dimension is missing; add it with z.unsqueeze(0)"
    elif z.ndim == 4 and shape[1:] == (latent_dim, 1, 1):
        problem = "a latent laid out as a 1x1 image (N, C, 1, 1); flatten it with z.flatten(1)"
    elif z.ndim != 2:
        problem = f"a {z.ndim}-d tensor; pass a 2-d batch of latent vectors (N, {latent_dim})"
    elif shape[1] != latent_dim:
        problem = (f"latent vectors of {shape[1]} entries; draw {latent_dim} per example (the model's sample(n) "
                   "draws them from its prior)")
    elif not z.is_floating_point():
        problem = f"dtype {str(z.dtype).removeprefix('torch.')}; convert with z.float()"
    elif shape[0] == 0:
        problem = "an empty batch; pass at least one latent vector"
    if problem is not None:
        raise ValueError(f"{expected}; got {shape}: {problem}")
