"""One input check shared by every model, so that bad input fails early with a message that says what the
network expects and how to fix the call, instead of a shape error from deep inside a convolution.

Each check raises ``ValueError("<model> expects <what>; got <shape>: <what is wrong, how to fix it>")``.

The checks of float inputs take the model itself (``model=self``): its ``model_name`` names it in the message,
and its weights' dtype is the dtype the input must have. A float64 or float16 input to a float32 model would
otherwise fail deep inside a layer with torch's "expected scalar type" error; here it gets one line with the
fix. Under ``torch.autocast`` mixed dtypes are intended, and the check lets them through.

Values, not only shapes: NaN and infinite inputs are refused where the user asked for it (:func:`check_finite`,
a pass over every input costs time) and always where they would otherwise pass silently into a plausible
output (a detector's NaN image gives finite boxes). Where the model defines the range of its inputs (a
detector's [0, 1] images, a Bernoulli likelihood's [0, 1] pixels, a GAN's real images in its generator's
output range), 0..255 images are refused with the division that fixes them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import ParamSpec

import torch
from torch import nn

_check_finite: ContextVar[bool] = ContextVar("paperzoo_check_finite", default=False)

_P = ParamSpec("_P")


def skip_on_fx_proxies(check: Callable[_P, None]) -> Callable[_P, None]:
    """``check``, doing nothing when an argument is a ``torch.fx.Proxy`` (symbolic tracing: the module docstring).
    Every check here has it, and so has a model's own input check (of a size only its architecture takes)."""
    @functools.wraps(check)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> None:
        if any(isinstance(arg, torch.fx.Proxy) for arg in args):
            return
        check(*args, **kwargs)
    return checked


@contextlib.contextmanager
def check_finite(enabled: bool = True) -> Iterator[None]:
    """Within this block, every model's input check also refuses NaN and infinite values (``with
    check_finite(): model(x)``). Off by default: it reads every value of every input, which costs a pass over
    the data; detectors check their images always."""
    token = _check_finite.set(enabled)
    try:
        yield
    finally:
        _check_finite.reset(token)


def _model_name(name: str | None, model: nn.Module | None) -> str:
    if name is not None:
        return name
    if model is None:
        raise TypeError("an input check needs the model (model=self) or its name")
    return getattr(model, "model_name", type(model).__name__)


def _autocast(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device autocast does not know (meta): no autocast there
        return False


def _value_problem(x: torch.Tensor, model: nn.Module | None, *, always_finite: bool = False,
                   value_range: tuple[float, float] | None = None, tolerance: float = 1e-3,
                   what: str = "x") -> str | None:
    """What is wrong with a float input's dtype (against ``model``'s weights) or values, or ``None``."""
    if model is not None and not _autocast(x.device.type):
        weights = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        if weights is not None and x.dtype != weights:
            given, wanted = str(x.dtype).removeprefix("torch."), str(weights).removeprefix("torch.")
            return (f"dtype {given}, but the model's weights are {wanted}; convert the input with "
                    f"{what}.to(torch.{wanted}), or the model with model.to(torch.{given})")
    if not values_are_known(x) or x.numel() == 0:
        return None
    if (always_finite or _check_finite.get()) and not bool(torch.isfinite(x).all()):
        return "NaN or infinite values; find where they come from (a division by zero, a failed load)"
    if value_range is not None:
        low, high = value_range
        smallest, largest = float(x.min()), float(x.max())
        if smallest < low - tolerance or largest > high + tolerance:
            scale = "x / 255" if low == 0 else f"x / 255 * {high - low:g} + {low:g}"
            return (f"values in [{smallest:.4g}, {largest:.4g}]; the model takes pixels in [{low:g}, {high:g}]"
                    + (f": divide 0..255 images with {scale}" if largest > 2 * high else ""))
    return None


def values_are_known(x: torch.Tensor) -> bool:
    """Whether a check may read ``x``'s values (ids in range, a mask of 0s and 1s), not only its shape.

    Not on the meta device, where there are none; not while ``torch.compile`` or ``torch.export`` traces the
    model, where the values are symbolic and reading one (``int(ids.max())``) would be a data-dependent branch: a
    graph break under ``fullgraph=True`` and an error in ``torch.export``. The shape checks still run there, and
    the eager call keeps every check.
    """
    return x.device.type != "meta" and not torch.compiler.is_compiling()


def _channels(count: int) -> str:
    return f"{count} channel{'s' if count != 1 else ''}"


@skip_on_fx_proxies
def check_input_values(x: torch.Tensor, *, model: nn.Module, expected: str,
                       value_range: tuple[float, float] | None = None) -> None:
    """The dtype and value checks of the checks below, for a model's own check of an input kind of its own (whose
    shape it has checked): raise ``ValueError(f"{expected}; got {shape}: ...")`` on a dtype other than the
    weights', or values outside ``value_range``."""
    problem = _value_problem(x, model, value_range=value_range)
    if problem is not None:
        raise ValueError(f"{expected}; got {tuple(x.shape)}: {problem}")


@skip_on_fx_proxies
def check_image_batch(x: object, *, model: nn.Module | None = None, name: str | None = None, in_chans: int,
                      min_size: int = 1, size: int | None = None, size_reason: str = "",
                      value_range: tuple[float, float] | None = None) -> None:
    """Check a batch of images for a CNN: a float tensor of shape ``(N, in_chans, H, W)``, H, W ``>= min_size``,
    of ``model``'s dtype (the module docstring).

    ``size``, if given, is the only H = W the network takes: its weights fix the input size (a fully-connected
    network on the flattened pixels; CapsNet, whose DigitCaps holds one weight matrix per primary capsule of the
    grid a 28×28 image gives). ``size_reason`` says why, in the message. ``value_range``, if given, is the range
    the pixels must lie in (a Bernoulli likelihood's [0, 1]).
    """
    name = _model_name(name, model)
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
    elif shape[1] != in_chans and shape[3] == in_chans:  # (N, H, W, C): the layout, not the channel count
        problem = (f"{_channels(shape[1])}: a channels-last (N, H, W, C) batch? move the channels first with "
                   "x.permute(0, 3, 1, 2)")
    elif shape[1] != in_chans:
        problem = (f"{_channels(shape[1])}; convert the images to {_channels(in_chans)}, or build the model "
                   f"with in_chans={shape[1]}")
    elif not x.is_floating_point():
        problem = (f"dtype {str(x.dtype).removeprefix('torch.')}; convert with x.float() "
                   "(and scale and normalise as in training)")
    elif shape[0] == 0:
        problem = "an empty batch; pass at least one image"
    elif size is not None and (shape[2], shape[3]) != (size, size):
        problem = (f"an image of {shape[2]}x{shape[3]}; resize it to exactly {size}x{size}"
                   + (f" ({size_reason})" if size_reason else ""))
    elif min(shape[2], shape[3]) < min_size:
        problem = f"an image of {shape[2]}x{shape[3]}; resize or pad it to at least {min_size}x{min_size}"
    else:
        problem = _value_problem(x, model, value_range=value_range)
    if problem is not None:
        raise ValueError(f"{expected}; got {shape}: {problem}")


@skip_on_fx_proxies
def check_latent_batch(z: object, *, model: nn.Module | None = None, name: str | None = None,
                       latent_dim: int) -> None:
    """Check a batch of latent vectors for a generator: a float tensor of shape ``(N, latent_dim)``, of
    ``model``'s dtype."""
    name = _model_name(name, model)
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
    else:
        problem = _value_problem(z, model, what="z")
    if problem is not None:
        raise ValueError(f"{expected}; got {shape}: {problem}")


@skip_on_fx_proxies
def check_token_batch(ids: object, *, name: str, vocab_size: int, max_length: int | None = None,
                      what: str = "token ids") -> None:
    """Check a batch of token ids for a sequence model: an integer tensor ``(N, T)`` with ``1 <= T``
    (``<= max_length`` where the model has learned positions) and every id in ``[0, vocab_size)``.

    ``what`` names the argument in the message (``"source token ids"`` for a translation model's source).
    """
    expected = f"{name} expects {what} as an integer tensor of shape (N, T) with ids in [0, {vocab_size})"
    if max_length is not None:
        expected += f" and T <= {max_length}"
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{expected}; got {type(ids).__name__}: convert it with torch.as_tensor(ids)")
    shape = tuple(ids.shape)
    problem = None
    if ids.ndim == 1:
        problem = "the batch dimension is missing; add it with ids.unsqueeze(0)"
    elif ids.ndim != 2:
        problem = (f"a {ids.ndim}-d tensor; pass a 2-d batch of ids (N, T)"
                   + ("; one-hot or embedded inputs are not taken, pass the ids" if ids.ndim == 3 else ""))
    elif ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        problem = f"dtype {str(ids.dtype).removeprefix('torch.')}; pass integer ids (ids.long())"
    elif shape[0] == 0:
        problem = "an empty batch; pass at least one sequence"
    elif shape[1] == 0:
        problem = "empty sequences; pass at least one token per sequence"
    elif max_length is not None and shape[1] > max_length:
        problem = f"sequences of {shape[1]} tokens; truncate or split them to at most {max_length}"
    elif values_are_known(ids):
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            problem = (f"id {bad} outside the vocabulary [0, {vocab_size}); map unknown tokens to the unknown-token "
                       "id of the tokenizer the model was trained with")
    if problem is not None:
        raise ValueError(f"{expected}; got {shape}: {problem}")



@skip_on_fx_proxies
def check_token_pair(src: object, tgt: object, *, name: str, vocab_size: int, target_vocab_size: int,
                     src_lengths: object = None) -> None:
    """Check a translation model's source and target: ids ``(N, S)`` in ``[0, vocab_size)`` and ``(N, T)`` in
    ``[0, target_vocab_size)`` (``tgt=None`` checks only the source, as for decoding), with the same N, and the
    optional ``src_lengths`` of a padded source (N integers in [1, S])."""
    check_token_batch(src, name=name, vocab_size=vocab_size, what="source token ids")
    if tgt is not None:
        check_token_batch(tgt, name=name, vocab_size=target_vocab_size, what="target token ids")
        if src.shape[0] != tgt.shape[0]:  # not len(), which would fix a dynamic batch size in torch.export
            raise ValueError(f"{name} expects a source (N, S) and a target (N, T) of the same batch size N; got "
                             f"{tuple(src.shape)} and {tuple(tgt.shape)}: pair each source with its target")
    if src_lengths is not None:
        check_sequence_lengths(src_lengths, name=name, batch_size=src.shape[0], max_length=src.shape[1],
                               what="src_lengths")


@skip_on_fx_proxies
def check_sequence_lengths(lengths: object, *, name: str, batch_size: int, max_length: int,
                           what: str = "lengths") -> None:
    """Check the lengths of a padded batch of sequences: N = ``batch_size`` integers in ``[1, max_length]``."""
    expected = f"{name} expects {what} as N = {batch_size} integers in [1, {max_length}] (one per sequence)"
    if not isinstance(lengths, torch.Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{expected}; got {type(lengths).__name__}") from None
    shape = tuple(lengths.shape)
    problem = None
    if shape != (batch_size,):
        problem = f"pass one length per sequence, a 1-d tensor of {batch_size}"
    elif lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        problem = f"dtype {str(lengths.dtype).removeprefix('torch.')}; pass integer lengths"
    elif values_are_known(lengths) and batch_size > 0:
        low, high = int(lengths.min()), int(lengths.max())
        if low < 1:
            problem = f"a length of {low}; an empty sequence has no step to read, leave it out of the batch"
        elif high > max_length:
            problem = f"a length of {high}, longer than the padded sequences ({max_length} steps)"
    if problem is not None:
        raise ValueError(f"{expected}; got {shape}: {problem}")

@skip_on_fx_proxies
def check_feature_sequence(x: object, *, model: nn.Module | None = None, name: str | None = None,
                           input_size: int, batch_first: bool = True) -> None:
    """Check a batch of feature sequences for a recurrent layer: a float tensor ``(N, T, input_size)``
    (``(T, N, input_size)`` when ``batch_first`` is false, as torch.nn's recurrent layers), or one unbatched
    sequence ``(T, input_size)``, with ``T >= 1``, of ``model``'s dtype."""
    name = _model_name(name, model)
    layout = "(N, T, F)" if batch_first else "(T, N, F)"
    expected = (f"{name} expects a float tensor of shape {layout.replace('F', str(input_size))} "
                f"(or (T, {input_size}) for one sequence)")
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{expected}; got {type(x).__name__}: convert it with torch.as_tensor")
    shape = tuple(x.shape)
    problem = None
    if x.ndim not in (2, 3):
        problem = f"a {x.ndim}-d tensor; pass {layout} with F = {input_size}"
    elif shape[-1] != input_size:
        problem = (f"{shape[-1]} features per step; project the inputs to {input_size} features, or build the "
                   f"layer with input_size={shape[-1]}")
    elif not x.is_floating_point():
        problem = f"dtype {str(x.dtype).removeprefix('torch.')}; convert with x.float() (embed token ids first)"
    elif 0 in shape:
        problem = "an empty batch or empty sequences; pass at least one step of one sequence"
    else:
        problem = _value_problem(x, model)
    if problem is not None:
        raise ValueError(f"{expected}; got {shape}: {problem}")


@skip_on_fx_proxies
def check_waveform_batch(x: object, *, model: nn.Module | None = None, name: str | None = None,
                         min_samples: int = 1, sample_rate: int = 16000) -> None:
    """Check a batch of raw waveforms: a float tensor ``(N, samples)`` at ``sample_rate`` with at least
    ``min_samples`` samples (the receptive field of the first frame), of ``model``'s dtype."""
    name = _model_name(name, model)
    expected = (f"{name} expects a float tensor of shape (N, samples) of {sample_rate // 1000} kHz audio "
                f"with samples >= {min_samples}")
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{expected}; got {type(x).__name__}: convert it with torch.as_tensor")
    shape = tuple(x.shape)
    problem = None
    if x.ndim == 1:
        problem = "the batch dimension is missing; add it with x.unsqueeze(0)"
    elif x.ndim == 3 and shape[1] == 1:
        problem = "a channel dimension (N, 1, samples); remove it with x.squeeze(1) (the model takes mono audio)"
    elif x.ndim != 2:
        problem = f"a {x.ndim}-d tensor; pass a 2-d batch of mono waveforms (N, samples)"
    elif not x.is_floating_point():
        problem = (f"dtype {str(x.dtype).removeprefix('torch.')}; convert 16-bit PCM with x.float() / 32768 "
                   "(and normalise as in training)")
    elif shape[0] == 0:
        problem = "an empty batch; pass at least one waveform"
    elif shape[1] < min_samples:
        problem = f"{shape[1]} samples; pad the waveform to at least {min_samples} samples"
    else:
        problem = _value_problem(x, model)
    if problem is not None:
        raise ValueError(f"{expected}; got {shape}: {problem}")


@skip_on_fx_proxies
def check_attention_mask(mask: object, *, name: str, shape: tuple[int, int]) -> None:
    """Check the padding mask that goes with a batch of token ids: a tensor of ``shape`` ``(N, S)`` (one entry per
    token, S = T, or the cached positions plus T for a model that generates with a key/value cache) holding 1 (or
    ``True``) at real tokens and 0 (``False``) at padding, with at least one real token in every sequence (a
    sequence of padding only has nothing to attend to)."""
    batch, length = shape
    expected = (f"{name} expects an attention mask of shape (N, T) = ({batch}, {length}), one entry per token: "
                "1 at real tokens, 0 at padding")
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{expected}; got {type(mask).__name__}: convert it with torch.as_tensor(mask)")
    got = tuple(mask.shape)
    problem = None
    if got != (batch, length):
        problem = "a mask that does not match the token ids; pass one entry per token"
    elif values_are_known(mask):
        if not bool(((mask == 0) | (mask == 1)).all()):
            problem = ("values other than 0 and 1; the model builds the additive (0 / -inf) mask itself, "
                       "pass 1 for real tokens and 0 for padding")
        elif not bool((mask != 0).any(dim=1).all()):
            problem = "a sequence of padding only; every sequence needs at least one real token"
    if problem is not None:
        raise ValueError(f"{expected}; got {got}: {problem}")


def check_image_list(images: object, *, model: nn.Module | None = None, name: str | None = None, in_chans: int = 3,
                     min_size: int = 1) -> None:
    """Check a detector's input: a non-empty list of float tensors ``(in_chans, H, W)`` (each its own size, values
    in [0, 1]), H, W ``>= min_size``, as torchvision's detection convention, of ``model``'s dtype.

    The values are checked too, where torchvision does not: a 0..255 image (the detector normalises [0, 1] images
    itself, so it would see every pixel saturated and find nothing) and a NaN or infinite pixel (which passes
    through the network into finite, confident boxes) are refused. Values a little above 1 (a resize's
    overshoot) pass.
    """
    name = _model_name(name, model)
    expected = f"{name} expects a list of float tensors of shape ({in_chans}, H, W)"
    if min_size > 1:
        expected += f" with H, W >= {min_size}"
    if isinstance(images, torch.Tensor):
        shape = tuple(images.shape)
        hint = ("pass list(x) to split a batch (N, C, H, W) into images" if images.ndim == 4
                else "wrap one image (C, H, W) in a list: [x]" if images.ndim == 3 else "pass a list of images")
        raise ValueError(f"{expected}; got a tensor of shape {shape}: {hint}")
    if not isinstance(images, (list, tuple)):
        raise ValueError(f"{expected}; got {type(images).__name__}: pass a list of image tensors")
    if len(images) == 0:
        raise ValueError(f"{expected}; got an empty list: pass at least one image")
    for index, image in enumerate(images):
        where = f"image {index}"
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"{expected}; got {type(image).__name__} as {where}: convert it with torch.as_tensor")
        shape = tuple(image.shape)
        problem = None
        if image.ndim == 4 and shape[0] == 1:
            problem = "a batch dimension; remove it with x[0] (a list holds single images)"
        elif image.ndim != 3:
            problem = f"a {image.ndim}-d tensor; each image is 3-d (C, H, W)"
        elif shape[0] != in_chans:
            problem = (f"{_channels(shape[0])}; convert the image to {_channels(in_chans)}"
                       + (" (a channels-last (H, W, C) array needs x.permute(2, 0, 1))" if shape[2] == in_chans
                          else ""))
        elif not image.is_floating_point():
            problem = (f"dtype {str(image.dtype).removeprefix('torch.')}; convert with x.float() / 255 "
                       "(values in [0, 1])")
        elif min(shape[1], shape[2]) < max(min_size, 1):
            problem = (f"an image of {shape[1]}x{shape[2]}; pass images of at least "
                       f"{max(min_size, 1)}x{max(min_size, 1)} pixels")
        else:
            # 0.5 of slack: a resize's overshoot passes, 0..255 and mean/std-normalised images do not
            problem = _value_problem(image, model, always_finite=True, value_range=(0.0, 1.0), tolerance=0.5)
        if problem is not None:
            raise ValueError(f"{expected}; got {shape} as {where}: {problem}")


def check_detection_targets(targets: object, images: list[torch.Tensor], *, name: str, num_classes: int,
                            needs_masks: bool = False, first_label: int = 1) -> None:
    """Check a detector's training targets: one dict per image with ``boxes`` a float tensor ``(K, 4)`` (x1, y1,
    x2, y2 in the image's pixels, x1 < x2 <= W, y1 < y2 <= H, x1, y1 >= 0), ``labels`` an integer tensor ``(K,)`` in
    ``[first_label, num_classes)`` (1: 0 is the background class of the R-CNN family and SSD), and with
    ``needs_masks`` ``masks`` ``(K, H, W)``. An image without objects (``boxes`` ``(0, 4)``, ``labels`` ``(0,)``)
    is valid. Call it after :func:`check_image_list`."""
    expected = (f"{name} expects targets as a list with one dict per image: 'boxes' a float tensor of shape (K, 4) "
                f"(x1, y1, x2, y2 in pixels), 'labels' an int64 tensor of shape (K,) in [{first_label}, {num_classes})"
                + (", 'masks' a tensor of shape (K, H, W)" if needs_masks else ""))
    if targets is None:
        raise ValueError(f"{expected}; got None: in training mode the model needs targets "
                         "(call model.eval() to detect)")
    if not isinstance(targets, (list, tuple)):
        raise ValueError(f"{expected}; got {type(targets).__name__}: pass a list of dicts")
    if len(targets) != len(images):
        raise ValueError(f"{expected}; got {len(targets)} targets for {len(images)} images: pass one per image")
    for index, (target, image) in enumerate(zip(targets, images, strict=True)):
        where = f"in the target of image {index}"
        if not isinstance(target, dict):
            raise ValueError(f"{expected}; got {type(target).__name__} {where}: pass a dict")
        for key in ("boxes", "labels") + (("masks",) if needs_masks else ()):
            if not isinstance(target.get(key), torch.Tensor):
                got = "no" if key not in target else type(target[key]).__name__
                raise ValueError(f"{expected}; got {got} '{key}' {where}: pass a tensor")
        boxes, labels = target["boxes"], target["labels"]
        height, width = image.shape[-2:]
        problem = None
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            problem = f"'boxes' of shape {tuple(boxes.shape)}; pass (K, 4), (0, 4) for an image without objects"
        elif not boxes.is_floating_point():
            problem = f"'boxes' of dtype {str(boxes.dtype).removeprefix('torch.')}; convert with boxes.float()"
        elif labels.shape != (boxes.shape[0],):
            problem = f"'labels' of shape {tuple(labels.shape)} for {boxes.shape[0]} boxes; pass one label per box"
        elif labels.is_floating_point() or labels.dtype == torch.bool:
            problem = f"'labels' of dtype {str(labels.dtype).removeprefix('torch.')}; convert with labels.long()"
        elif boxes.device.type != "meta" and len(boxes):
            x1, y1, x2, y2 = boxes.unbind(1)
            bad_label = (labels < first_label) | (labels >= num_classes)
            if not torch.isfinite(boxes).all():
                problem = "non-finite box coordinates"
            elif bool(((x2 <= x1) | (y2 <= y1)).any()):
                k = int(torch.nonzero((x2 <= x1) | (y2 <= y1))[0])
                problem = (f"box {k} {[round(v, 2) for v in boxes[k].tolist()]} with x2 <= x1 or y2 <= y1; boxes are "
                           "(x1, y1, x2, y2) with positive width and height (convert (x, y, w, h) to corners)")
            elif bool(((x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height)).any()):
                k = int(torch.nonzero((x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height))[0])
                problem = (f"box {k} {[round(v, 2) for v in boxes[k].tolist()]} outside the {height}x{width} image; "
                           f"clip boxes to [0, {width}] x [0, {height}] (pixels, not normalised coordinates)")
            elif bool(bad_label.any()):
                bad = int(labels[bad_label][0])
                problem = (f"label {bad} outside [{first_label}, {num_classes})"
                           + ("; 0 is the background class, objects are labelled from 1" if bad == 0 < first_label
                              else f"; the model has {num_classes} classes"))
        if problem is None and needs_masks:
            masks = target["masks"]
            if tuple(masks.shape) != (boxes.shape[0], height, width):
                problem = (f"'masks' of shape {tuple(masks.shape)}; pass one (H, W) = ({height}, {width}) mask per "
                           f"box: ({boxes.shape[0]}, {height}, {width})")
        if problem is not None:
            raise ValueError(f"{expected}; got {problem} {where}")
