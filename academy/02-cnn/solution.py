"""Lab 2, reference solution: convolutional networks on handwritten digits.

A convolution slides small learned filters over the image (LeCun et al., "Gradient-based learning applied
to document recognition", 1998). The data: scikit-learn's bundled 8x8 digits (1,797 images); the grader
also trains on 28x28 MNIST when ../shared/data/mnist_test is present.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

# ---------------------------------------------------------------------------------- 1. what a convolution computes


def conv2d_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """The height (or width) of a convolution's output: how many positions the kernel fits in."""
    return (size + 2 * padding - kernel_size) // stride + 1


def conv2d(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """A 2-D convolution by hand (stride 1, no padding), as nn.Conv2d computes it.

    x: (B, C, H, W), weight: (C_out, C, kH, kW), bias: (C_out,) -> (B, C_out, H - kH + 1, W - kW + 1).
    Each output pixel is the dot product of a filter with the patch of x under it, plus the filter's bias.
    """
    B, C, H, W = x.shape
    C_out, _, kH, kW = weight.shape
    H_out, W_out = conv2d_output_size(H, kH), conv2d_output_size(W, kW)
    out = x.new_zeros(B, C_out, H_out, W_out)
    for i in range(H_out):
        for j in range(W_out):
            patch = x[:, :, i:i + kH, j:j + kW]  # (B, C, kH, kW)
            # sum over channels and kernel positions: (B, C, kH, kW) x (C_out, C, kH, kW) -> (B, C_out)
            out[:, :, i, j] = torch.einsum("bckl,ockl->bo", patch, weight) + bias
    return out


# ---------------------------------------------------------------------------------------------- 2. the network


class CNN(nn.Module):
    """conv -> relu -> pool -> conv -> relu -> pool -> linear: (B, 1, S, S) images -> (B, n_classes) logits.

    The first convolution is `conv1`: the plots show its filters and its feature maps.
    """

    def __init__(self, image_size: int = 8, n_classes: int = 10, channels: tuple[int, int] = (16, 32)) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, kernel_size=3, padding=1)  # "same" padding: (B, c1, S, S)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, padding=1)  # (B, c2, S/2, S/2)
        size = conv2d_output_size(image_size, 3, padding=1) // 2  # after conv1 and a 2x2 max-pool
        size = conv2d_output_size(size, 3, padding=1) // 2  # after conv2 and a 2x2 max-pool
        self.head = nn.Linear(c2 * size * size, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, c1, S/2, S/2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, c2, S/4, S/4)
        return self.head(x.flatten(1))  # (B, c2 * S/4 * S/4) -> (B, n_classes)


def feature_maps(model: CNN, x: Tensor) -> Tensor:
    """What the first layer sees: relu(conv1(x)), (B, 1, S, S) -> (B, c1, S', S')."""
    return F.relu(model.conv1(x))


# ---------------------------------------------------------------------------------------------- 3. training


def train(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, lr: float, batch_size: int,
          seed: int = 0) -> list[float]:
    """Mini-batch Adam on the cross-entropy; returns the mean loss of each epoch.

    x: (N, 1, S, S) float images, y: (N,) int64 class ids.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])  # softmax + negative log-likelihood, from logits
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    return losses


@torch.no_grad()
def predict(model: nn.Module, x: Tensor) -> Tensor:
    """Class ids (N,): the index of the largest logit."""
    model.eval()
    return model(x).argmax(dim=1)


def fit(x_train: Tensor, y_train: Tensor, image_size: int = 8, seed: int = 0) -> tuple[CNN, list[float]]:
    """Build and train a CNN for `image_size` x `image_size` digits; returns it and its loss curve."""
    torch.manual_seed(seed)
    if image_size <= 8:
        model = CNN(image_size, channels=(16, 32))
        losses = train(model, x_train, y_train, epochs=20, lr=3e-3, batch_size=32, seed=seed)
    else:  # 12x the pixels of 8x8 digits: fewer channels keep MNIST fast; more images need fewer epochs
        model = CNN(image_size, channels=(8, 16))
        losses = train(model, x_train, y_train, epochs=3, lr=6e-3, batch_size=64, seed=seed)
    return model, losses


# ---------------------------------------------------------------------------------------------- 4. looking inside


def _grid(images: Tensor, labels: list[str], path: Path, title: str, cmap: str) -> None:
    """Save (N, H, W) images as a grid of small labelled panels."""
    import matplotlib

    matplotlib.use("Agg")  # draw to files, no window
    import matplotlib.pyplot as plt

    n = images.shape[0]
    cols = min(8, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.4 * rows + 0.5), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k].numpy(), cmap=cmap)
            ax.set_title(labels[k], fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def plot_filters(model: CNN, path: Path) -> None:
    """Save conv1's filters, one small image each, as a PNG."""
    weight = model.conv1.weight[:, 0]  # (c1, 1, 3, 3) -> (c1, 3, 3): one input channel
    # red: the filter responds to ink there, blue: to its absence
    _grid(weight, [f"filter {k}" for k in range(len(weight))], path, "conv1 filters", cmap="coolwarm")


@torch.no_grad()
def plot_feature_maps(model: CNN, image: Tensor, path: Path) -> None:
    """Save the first layer's feature maps for one (1, S, S) image as a PNG, the image itself first."""
    maps = feature_maps(model, image.unsqueeze(0))[0]  # (1, 1, S, S) -> (c1, S', S')
    labels = ["input"] + [f"map {k}" for k in range(len(maps))]
    _grid(torch.cat([image, maps]), labels, path, "an input digit and its conv1 feature maps", cmap="viridis")
