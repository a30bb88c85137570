"""Lab 2: convolutional networks on handwritten digits.

The data: scikit-learn's bundled 8x8 digits (1,797 images); the grader also trains your network on 28x28
MNIST when ../shared/data/mnist_test is present. Fill in every TODO, top to bottom, and run
`shoal academy check 2` after each one: the checks go in the same order as this file.
README.md explains the ideas; each function's docstring says exactly what it must return.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (F.relu, F.max_pool2d, F.cross_entropy)
from torch import Tensor

# ---------------------------------------------------------------------------------- 1. what a convolution computes


def conv2d_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """The height (or width) of a convolution's output: how many positions the kernel fits in.

    Example: an 8-pixel row, a 3-pixel kernel, stride 1, no padding -> 6 positions.
    """
    # TODO: the padded row is `size` plus `padding` on *both* sides; the kernel starts at position 0 and moves by
    #       `stride` until it would stick out. Count its positions (integers in, an int out). README: "Shapes".
    raise NotImplementedError("TODO: conv2d_output_size: the output size from size, kernel, stride and padding")


def conv2d(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """A 2-D convolution by hand (stride 1, no padding), as nn.Conv2d computes it.

    x: (B, C, H, W), weight: (C_out, C, kH, kW), bias: (C_out,) -> (B, C_out, H - kH + 1, W - kW + 1).
    out[b, o, i, j] = sum over c, k, l of x[b, c, i + k, j + l] * weight[o, c, k, l], plus bias[o].
    """
    # TODO: slide the window yourself: each output position (i, j) sees the patch of x under the kernel,
    #       (B, C, kH, kW); every filter (C, kH, kW) gives one number per image there, so a position holds
    #       (B, C_out) values, plus each filter's bias. The kernel is not flipped, and kH may differ from kW.
    #       Torch operations only, so that autograd can compute the gradients (the check runs without F.conv2d
    #       and F.unfold). README: "Convolution = cross-correlation".
    raise NotImplementedError("TODO: conv2d by hand: slide the filters over x, one output pixel at a time")


# ---------------------------------------------------------------------------------------------- 2. the network


class CNN(nn.Module):
    """A small convolutional network: (B, 1, S, S) images -> (B, n_classes) logits.

    Name the first convolution `self.conv1`: the plots show its filters and its feature maps.
    """

    def __init__(self, image_size: int = 8, n_classes: int = 10) -> None:
        super().__init__()
        # TODO: two convolutions (grey images: 1 input channel; small kernels, padded to keep the size) and a
        #       linear head to n_classes logits. The head's input size is channels x height x width after the
        #       second 2x2 pool: derive it from image_size with conv2d_output_size (a pool halves, rounding
        #       down), so that CNN(8) and CNN(28) both work. README: "Shapes", "The network".
        raise NotImplementedError("TODO: create the CNN's layers: self.conv1, a second conv, a linear head")

    def forward(self, x: Tensor) -> Tensor:
        # TODO: (B, 1, S, S) -> each convolution followed by a non-linearity and a 2x2 max-pool -> one vector per
        #       image, (B, C * S' * S') -> (B, n_classes) logits (no softmax: the loss applies it).
        #       README: "The network".
        raise NotImplementedError("TODO: CNN.forward: convolutions, ReLUs, pooling, then the linear head")


def feature_maps(model: CNN, x: Tensor) -> Tensor:
    """What the first layer sees: relu(conv1(x)), (B, 1, S, S) -> (B, c1, S', S')."""
    # TODO: the first layer's response, after its non-linearity and before any pooling: one map per filter.
    raise NotImplementedError("TODO: feature_maps: the first convolution's output for x, after its ReLU")


# ---------------------------------------------------------------------------------------------- 3. training


def train(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, lr: float, batch_size: int,
          seed: int = 0) -> list[float]:
    """Mini-batch training on the cross-entropy; returns the mean loss of each epoch.

    x: (N, 1, S, S) float images, y: (N,) int64 class ids. `lr` is Adam's learning rate.
    """
    # TODO: the loop from lab 1 (a seeded shuffle per epoch, mini-batches, Adam, fresh gradients each step), with
    #       the loss for 10 classes: the cross-entropy of the logits (B, 10) against the class ids (B,).
    raise NotImplementedError("TODO: write the training loop with F.cross_entropy")


@torch.no_grad()
def predict(model: nn.Module, x: Tensor) -> Tensor:
    """Class ids (N,): the index of the largest logit."""
    # TODO: evaluation mode; each image's class is the index of its largest logit, (N, 10) -> (N,) int64.
    raise NotImplementedError("TODO: predict: the class with the largest logit, one per image")


def fit(x_train: Tensor, y_train: Tensor, image_size: int = 8, seed: int = 0) -> tuple[CNN, list[float]]:
    """Build and train a CNN for `image_size` x `image_size` digits; returns it and its loss curve.

    Your choice of channels, epochs, learning rate and batch size. The check wants >= 0.95 held-out accuracy
    on 8x8 digits (and >= 0.92 on 28x28 MNIST when present), each within a time limit of 120 seconds.
    """
    # TODO: seed torch (the initial weights), build a CNN for image_size, train it with your choice of
    #       hyperparameters, return (model, the losses per epoch).
    raise NotImplementedError("TODO: fit: build a CNN, train it, return (model, losses)")


# ---------------------------------------------------------------------------------------------- 4. looking inside


@torch.no_grad()
def plot_filters(model: CNN, path: Path) -> None:
    """Save conv1's filters, one small image each, as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: conv1's weight is (c1, 1, kH, kW): draw each filter as its own small image (its weights, unscaled)
    #       in a grid of axes; save the figure as a PNG at `path` and close it. The grader reads the figure.
    raise NotImplementedError("TODO: plot_filters: draw conv1's filters in a grid and save the PNG")


@torch.no_grad()
def plot_feature_maps(model: CNN, image: Tensor, path: Path) -> None:
    """Save the first layer's feature maps for one (1, S, S) image as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: your feature_maps of this one image (add a batch dimension of 1) give (c1, S', S'): draw the image
    #       and each map as its own small image in a grid; save the PNG at `path` and close the figure.
    raise NotImplementedError("TODO: plot_feature_maps: draw the image's conv1 feature maps and save the PNG")
