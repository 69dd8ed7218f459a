"""One input check shared by every model, so that bad input fails early with a message that says what the
network expects and how to fix the call, instead of a shape error from deep inside a convolution.

Each check raises ``ValueError("<model> expects <what>; got <shape>: <what is wrong, how to fix it>")``.
"""

from __future__ import annotations

import torch


def check_image_batch(x: object, *, name: str, in_chans: int, min_size: int = 1, exact_size: int | None = None,
                      size_reason: str = "") -> None:
    """Check a batch of images for a CNN: a float tensor of shape ``(N, in_chans, H, W)``, H, W ``>= min_size``.

    ``exact_size`` is for the networks whose weights fix the input size (e.g. CapsNet, whose DigitCaps has one
    weight matrix per primary capsule of the grid a 28×28 image gives): H = W = ``exact_size`` exactly, and
    ``size_reason`` says why, in the message. Without it the check is the minimum-size one.
    """
    expected = f"{name} expects a float tensor of shape (N, {in_chans}, H, W)"
    if exact_size is not None:
        expected += f" with H = W = {exact_size}"
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
    elif exact_size is not None and (shape[2], shape[3]) != (exact_size, exact_size):
        problem = (f"an image of {shape[2]}x{shape[3]}; resize it to exactly {exact_size}x{exact_size}"
                   + (f" ({size_reason})" if size_reason else ""))
    elif min(shape[2], shape[3]) < min_size:
        problem = f"an image of {shape[2]}x{shape[3]}; resize or pad it to at least {min_size}x{min_size}"
    if problem is not None:
        raise ValueError(f"{expected}; got {shape}: {problem}")
