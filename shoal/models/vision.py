"""A small ResNet for image features, trained from scratch.

He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition" (CVPR; arXiv:1512.03385), in the
CIFAR form of its section 4.2: a 3x3 stem, then stages of basic blocks (two 3x3 convolutions with batch
normalisation, the input added back), each stage after the first halving the resolution and widening the
channels, then global average pooling::

    image (B, C, H, W) -> stem conv 3x3 -> [BasicBlock x blocks] per width, stride 2 from the second stage
        -> global average pool (B, widths[-1])

Training-time augmentation (:class:`Augment`) runs on each mini-batch in training mode only: random shifts
(the edge pixels repeated), small rotations and, when asked, left-right flips, in one affine resampling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Augment", "BasicBlock", "ImageEncoder", "ResNet"]


class BasicBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers with an identity shortcut (a 1x1 projection when the shape changes)."""

    def __init__(self, inputs: int, outputs: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))  # (B, c_out, H / s, W / s)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))  # F(x) + x: the residual


class ResNet(nn.Module):
    """Stem + stages of :class:`BasicBlock` + global average pool: (B, C, H, W) -> (B, widths[-1])."""

    def __init__(self, channels: int, widths: tuple[int, ...], blocks: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers: list[nn.Module] = []
        inputs = widths[0]
        for i, width in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(inputs, width, stride=2 if i > 0 and b == 0 else 1))
                inputs = width
        self.stages = nn.Sequential(*layers)
        self.dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, widths[-1], H / 2^(S-1), W / 2^(S-1))
        return x.mean(dim=(2, 3))  # (B, widths[-1])


class Augment(nn.Module):
    """Random shifts of up to ``shift`` of the size, rotations of up to ``degrees`` and (``flip``) mirror images,
    one draw per example, applied by one bilinear resampling (``affine_grid`` + ``grid_sample``). Pixels moved in
    from outside repeat the nearest edge pixel: the input is already normalised, so a zero there would be a
    frame of mean grey that no real image has (a digit's black background, a photo's border). The identity in
    evaluation mode."""

    SHIFT = 0.125  # of the image's height and width
    DEGREES = 10.0

    def __init__(self, flip: bool, shift: float = SHIFT, degrees: float = DEGREES) -> None:
        super().__init__()
        self.flip = flip
        self.shift = shift
        self.degrees = degrees

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        b = x.shape[0]
        angle = (torch.rand(b) * 2 - 1) * math.radians(self.degrees)  # (B,)
        mirror = torch.where(torch.rand(b) < 0.5, -1.0, 1.0) if self.flip else torch.ones(b)
        move = (torch.rand(b, 2) * 2 - 1) * 2 * self.shift  # (B, 2) in grid units: [-1, 1] spans the image
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos * mirror, -sin, move[:, 0]], dim=1),
                             torch.stack([sin * mirror, cos, move[:, 1]], dim=1)], dim=1)  # (B, 2, 3)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (B, H, W, 2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class ImageEncoder(nn.Module):
    """An image feature's vector: (B, C, H, W) -> augmentation (training) -> :class:`ResNet` -> (B, widths[-1])."""

    def __init__(self, channels: int, widths: tuple[int, ...], blocks: int = 1, augment: bool = False,
                 flip: bool = False) -> None:
        super().__init__()
        self.augment: nn.Module = Augment(flip) if augment else nn.Identity()
        self.resnet = ResNet(channels, widths, blocks)
        self.dim = self.resnet.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnet(self.augment(x))  # (B, widths[-1])
