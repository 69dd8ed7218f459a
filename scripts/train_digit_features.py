#!/usr/bin/env python
"""Train the small digits classifier whose features score generated digits (paperzoo.training.digit_features)
and write its weights into the package, then print its accuracy on the held-out digits.

    python scripts/train_digit_features.py

Deterministic: scikit-learn's digits at 28×28 with the stratified split of paperzoo.training.data.digits
(seed 0), light augmentation (random shifts of up to 2 pixels, so that the features do not hinge on a digit's
exact position, which generators do not reproduce exactly), Adam at 3e-3 with cosine decay for 30 epochs in
batches of 64, one thread, seed 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from paperzoo.training import digit_features
from paperzoo.training.data import digits


def shifted(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    shifts = torch.randint(-2, 3, (len(images), 2), generator=generator)
    return torch.stack([torch.roll(image, tuple(shift.tolist()), dims=(1, 2))
                        for image, shift in zip(images, shifts, strict=True)])


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train_images, train_labels = digits("train", image_size=28).tensors
    test_images, test_labels = digits("test", image_size=28).tensors
    net = digit_features.DigitFeatures()
    epochs, batch = 30, 64
    steps = epochs * math.ceil(len(train_images) / batch)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for _ in range(epochs):
        net.train()
        for index in torch.randperm(len(train_images), generator=generator).split(batch):
            loss = F.cross_entropy(net(shifted(train_images[index], generator)), train_labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(test_images).argmax(1) == test_labels).float().mean().item()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(digit_features.WEIGHTS))
    print(f"wrote {digit_features.WEIGHTS} ({digit_features.WEIGHTS.stat().st_size:,} bytes); "
          f"test accuracy {accuracy:.4f} on {len(test_labels)} held-out digits")


if __name__ == "__main__":
    main()
