"""The shared input check, against an independent statement of what a valid image batch is."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paperzoo.layers import check_image_batch

DTYPES = [torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int64, torch.uint8, torch.bool]


@settings(max_examples=300, deadline=None)
@given(
    shape=st.lists(st.integers(0, 6), min_size=0, max_size=5),
    dtype=st.sampled_from(DTYPES),
    in_chans=st.integers(1, 4),
    min_size=st.integers(1, 5),
)
def test_accepts_exactly_the_valid_batches(shape, dtype, in_chans, min_size):
    x = torch.zeros(shape, dtype=dtype)
    valid = (len(shape) == 4 and shape[1] == in_chans and dtype.is_floating_point and shape[0] > 0
             and min(shape[2], shape[3]) >= min_size)
    if valid:
        check_image_batch(x, name="net", in_chans=in_chans, min_size=min_size)
        return
    with pytest.raises(ValueError) as info:
        check_image_batch(x, name="net", in_chans=in_chans, min_size=min_size)
    message = str(info.value)
    assert message.startswith(f"net expects a float tensor of shape (N, {in_chans}, H, W)")
    assert f"got {tuple(shape)}: " in message


@pytest.mark.parametrize("x, advice", [
    (torch.zeros(3, 224, 224), "x.unsqueeze(0)"),
    (torch.zeros(1, 224, 224, 3), "x.permute(0, 3, 1, 2)"),
    (torch.zeros(1, 1, 224, 224), "in_chans=1"),
    (torch.zeros(1, 3, 224, 224, dtype=torch.uint8), "x.float()"),
    (torch.zeros(1, 3, 16, 64), "at least 32x32"),
    (torch.zeros(0, 3, 224, 224), "empty batch"),
    (torch.zeros(2, 3, 4, 4, 4), "5-d tensor"),
])
def test_messages_say_how_to_fix_the_call(x, advice):
    with pytest.raises(ValueError, match=r"resnet50 expects a float tensor of shape \(N, 3, H, W\) with H, W >= 32"
                       ) as info:
        check_image_batch(x, name="resnet50", in_chans=3, min_size=32)
    assert advice in str(info.value)


def test_the_issue_example_message():
    with pytest.raises(ValueError) as info:
        check_image_batch(torch.zeros(3, 224, 224), name="resnet50", in_chans=3, min_size=32)
    assert str(info.value).startswith(
        "resnet50 expects a float tensor of shape (N, 3, H, W) with H, W >= 32; got (3, 224, 224)")


@pytest.mark.parametrize("size, ok", [(27, False), (28, True), (29, False), (64, False)])
def test_exact_size_accepts_only_that_size_and_says_why(size, ok):
    x = torch.zeros(1, 1, size, size)
    if ok:
        check_image_batch(x, name="capsnet", in_chans=1, min_size=28, exact_size=28, size_reason="weights")
        return
    with pytest.raises(ValueError) as info:
        check_image_batch(x, name="capsnet", in_chans=1, min_size=28, exact_size=28, size_reason="weights")
    assert str(info.value) == (f"capsnet expects a float tensor of shape (N, 1, H, W) with H = W = 28; got (1, 1, "
                               f"{size}, {size}): an image of {size}x{size}; resize it to exactly 28x28 (weights)")
