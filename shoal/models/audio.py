"""A small 2-D CNN over a log-mel spectrogram, for audio features.

The spectrogram is read as a one-channel image of mel bands x frames, in the manner of keyword-spotting CNNs
(Sainath & Parada 2015, "Convolutional Neural Networks for Small-footprint Keyword Spotting")::

    log-mel (B, 1, M, T) -> batch-norm (the log energies to zero mean, unit variance)
        -> [conv 3x3, batch-norm, ReLU] x blocks, max-pool 2x2 per width -> global max pool (B, widths[-1])

Training-time augmentation (:class:`SpecAugment`) runs in training mode only: Park et al. 2019, "SpecAugment: A
Simple Data Augmentation Method for Automatic Speech Recognition" (arXiv:1904.08779): one band of mel channels
and one span of frames masked per example, plus a random circular shift in time.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpecAugment", "SpectrogramCNN"]


class SpecAugment(nn.Module):
    """Per example: a random time shift, a mask of up to ``bands`` mel channels and one of up to ``frames``
    (fractions of the spectrogram), filled with the example's mean. The identity in evaluation mode."""

    def __init__(self, bands: float = 0.15, frames: float = 0.15, shift: float = 0.1) -> None:
        super().__init__()
        self.bands = bands
        self.frames = frames
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        b, _, m, t = x.shape
        steps = int(torch.randint(-int(self.shift * t), int(self.shift * t) + 1, ()))
        x = torch.roll(x, steps, dims=3)  # the same shift for the whole batch: one cheap op
        fill = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        for size, length, axis in ((m, self.bands, 2), (t, self.frames, 3)):
            width = (torch.rand(b) * length * size).long()  # (B,)
            start = (torch.rand(b) * (size - width + 1)).long()  # (B,)
            pos = torch.arange(size)  # (size,)
            mask = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # (B, size)
            mask = mask[:, None, :, None] if axis == 2 else mask[:, None, None, :]  # (B, 1, M, 1) or (B, 1, 1, T)
            x = torch.where(mask, fill, x)
        return x


class SpectrogramCNN(nn.Module):
    """(B, 1, M, T) log-mel -> (B, widths[-1]): conv blocks with 2x2 max-pooling, then global max pooling."""

    def __init__(self, widths: tuple[int, ...], blocks: int = 1, augment: bool = False) -> None:
        super().__init__()
        self.augment: nn.Module = SpecAugment() if augment else nn.Identity()
        self.norm = nn.BatchNorm2d(1)
        layers: list[nn.Module] = []
        inputs = 1
        for i, width in enumerate(widths):
            for _ in range(blocks):
                layers += [nn.Conv2d(inputs, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                inputs = width
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))  # (B, c, ceil(M / 2), ceil(T / 2))
        self.convs = nn.Sequential(*layers)
        self.dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.norm(self.augment(x)))  # (B, widths[-1], M', T')
        # a global max, not a mean: a spoken word fills a short part of a clip padded with silence, and its
        # features would be diluted by the silent frames (on spoken digits the mean learned several times slower)
        return x.amax(dim=(2, 3))  # (B, widths[-1])
