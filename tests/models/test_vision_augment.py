"""Image augmentation: pixels moved in from outside repeat the edge (never the mean grey of a zero); shifts and
rotations stay within their bounds; nothing changes in evaluation."""

from __future__ import annotations

import torch

from shoal.models.vision import Augment


def test_shifted_in_pixels_repeat_the_edge_not_zero() -> None:
    torch.manual_seed(0)
    black = torch.full((16, 1, 12, 12), -2.0)  # a black background, normalised: (0 - 0.5) / 0.25
    out = Augment(flip=True).train()(black)
    torch.testing.assert_close(out, black)  # a zero border would be a grey frame no real image has


def test_augment_moves_pixels_in_training_only() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 16)
    aug = Augment(flip=False)
    assert not torch.allclose(aug.train()(x), x)
    torch.testing.assert_close(aug.eval()(x), x)


def test_shift_stays_within_its_bound() -> None:
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 7:9, 7:9] = 1.0  # a dot in the middle
    out = Augment(flip=False, shift=0.125, degrees=0.0).train()(x)
    rows, cols = torch.nonzero(out[:, 0] > 0.01, as_tuple=True)[1:]
    assert rows.min() >= 7 - 3 and rows.max() <= 8 + 3  # 1/8 of 16 pixels: at most 2 (+1 for bilinear spread)
    assert cols.min() >= 7 - 3 and cols.max() <= 8 + 3
