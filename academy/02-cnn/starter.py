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
    # TODO: pad both sides by `padding`, then count the kernel's positions, stepping by `stride`
    raise NotImplementedError("TODO: conv2d_output_size: the output size from size, kernel, stride and padding")


def conv2d(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """A 2-D convolution by hand (stride 1, no padding), as nn.Conv2d computes it.

    x: (B, C, H, W), weight: (C_out, C, kH, kW), bias: (C_out,) -> (B, C_out, H - kH + 1, W - kW + 1).
    out[b, o, i, j] = sum over c, k, l of x[b, c, i + k, j + l] * weight[o, c, k, l], plus bias[o].
    """
    # TODO: loop over the output positions (i, j). At each one, take the patch x[:, :, i:i + kH, j:j + kW]
    #       (B, C, kH, kW), multiply it with every filter and sum over (C, kH, kW) -> (B, C_out); add the bias.
    #       torch.einsum("bckl,ockl->bo", patch, weight) does the multiply-and-sum in one call.
    #       Use torch operations only, so that autograd can compute the gradients.
    raise NotImplementedError("TODO: conv2d by hand: slide the filters over x, one output pixel at a time")


# ---------------------------------------------------------------------------------------------- 2. the network


class CNN(nn.Module):
    """A small convolutional network: (B, 1, S, S) images -> (B, n_classes) logits.

    Name the first convolution `self.conv1`: the plots show its filters and its feature maps.
    """

    def __init__(self, image_size: int = 8, n_classes: int = 10) -> None:
        super().__init__()
        # TODO: conv1 = nn.Conv2d(1, c1, kernel_size=3, padding=1), a second conv, and a final nn.Linear.
        #       The linear layer's input size depends on image_size: compute it with conv2d_output_size
        #       (and divide by 2 after each 2x2 max-pool), so CNN(8) and CNN(28) both work.
        raise NotImplementedError("TODO: create the CNN's layers: self.conv1, a second conv, a linear head")

    def forward(self, x: Tensor) -> Tensor:
        # TODO: conv1 -> relu -> max_pool2d(2) -> conv2 -> relu -> max_pool2d(2) -> flatten(1) -> linear
        raise NotImplementedError("TODO: CNN.forward: convolutions, ReLUs, pooling, then the linear head")


def feature_maps(model: CNN, x: Tensor) -> Tensor:
    """What the first layer sees: relu(conv1(x)), (B, 1, S, S) -> (B, c1, S', S')."""
    raise NotImplementedError("TODO: feature_maps: return relu(model.conv1(x))")


# ---------------------------------------------------------------------------------------------- 3. training


def train(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, lr: float, batch_size: int,
          seed: int = 0) -> list[float]:
    """Mini-batch training on the cross-entropy; returns the mean loss of each epoch.

    x: (N, 1, S, S) float images, y: (N,) int64 class ids. `lr` is Adam's learning rate.
    """
    # TODO: the loop from lab 1, with F.cross_entropy(logits, y) as the loss (it takes raw logits)
    raise NotImplementedError("TODO: write the training loop with F.cross_entropy")


@torch.no_grad()
def predict(model: nn.Module, x: Tensor) -> Tensor:
    """Class ids (N,): the index of the largest logit."""
    raise NotImplementedError("TODO: predict: model.eval(), then the argmax of the logits over dim=1")


def fit(x_train: Tensor, y_train: Tensor, image_size: int = 8, seed: int = 0) -> tuple[CNN, list[float]]:
    """Build and train a CNN for `image_size` x `image_size` digits; returns it and its loss curve.

    Your choice of channels, epochs, learning rate and batch size. The check wants >= 0.95 held-out accuracy
    on 8x8 digits (and on 28x28 MNIST when present), each within a time limit of 120 seconds.
    """
    # TODO: torch.manual_seed(seed), build CNN(image_size), train it, return (model, losses)
    raise NotImplementedError("TODO: fit: build a CNN, train it, return (model, losses)")


# ---------------------------------------------------------------------------------------------- 4. looking inside


@torch.no_grad()
def plot_filters(model: CNN, path: Path) -> None:
    """Save conv1's filters, one small image each, as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: model.conv1.weight is (c1, 1, 3, 3): show each [k, 0] with ax.imshow in a grid of subplots
    #       (plt.subplots(rows, cols)), then fig.savefig(path) and plt.close(fig)
    raise NotImplementedError("TODO: plot_filters: draw conv1's filters in a grid and save the PNG")


@torch.no_grad()
def plot_feature_maps(model: CNN, image: Tensor, path: Path) -> None:
    """Save the first layer's feature maps for one (1, S, S) image as a PNG at `path`."""
    # TODO: feature_maps(model, image.unsqueeze(0))[0] is (c1, S', S'): draw the image and each map in a grid
    raise NotImplementedError("TODO: plot_feature_maps: draw the image's conv1 feature maps and save the PNG")
