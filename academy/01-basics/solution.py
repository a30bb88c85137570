"""Lab 1, reference solution: tensors, autograd, an MLP and its training loop on tabular data.

The task: tell malignant from benign breast tumours from 30 measurements of cell nuclei
(scikit-learn's bundled Wisconsin breast-cancer data, 569 rows). A two-layer MLP gets 0.958 held out.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

# ---------------------------------------------------------------------------------------------- 1. tensors


def standardize(x_train: Tensor, x_other: Tensor) -> tuple[Tensor, Tensor]:
    """Scale every column to mean 0 and standard deviation 1, using the *training* rows' statistics.

    x_train: (N, D), x_other: (M, D) -> both standardized, same shapes. The held-out rows use the
    training mean and std: at serving time we only know what we saw in training.
    """
    mean = x_train.mean(dim=0, keepdim=True)  # (1, D): broadcasts over the N rows
    std = x_train.std(dim=0, keepdim=True).clamp_min(1e-8)  # (1, D); clamp: a constant column would divide by 0
    return (x_train - mean) / std, (x_other - mean) / std


# ---------------------------------------------------------------------------------------------- 2. autograd


def bce_with_logits_grad(logits: Tensor, targets: Tensor) -> Tensor:
    """The gradient of the mean binary cross-entropy with respect to the logits, derived by hand.

    loss = mean_i -[y_i log s(z_i) + (1 - y_i) log(1 - s(z_i))], s = sigmoid. Since ds/dz = s (1 - s),
    d loss / d z_i = (s(z_i) - y_i) / N: the prediction error, averaged. logits, targets: (N,) -> (N,).
    """
    return (torch.sigmoid(logits) - targets) / logits.shape[0]


# ---------------------------------------------------------------------------------------------- 3. the model


class MLP(nn.Module):
    """Two linear layers with a ReLU between them: (B, n_in) -> (B,) logits of the positive class."""

    def __init__(self, n_in: int, n_hidden: int = 32) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_in, n_hidden)
        self.out = nn.Linear(n_hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.hidden(x))  # (B, n_hidden): without the non-linearity two layers collapse into one
        return self.out(h).squeeze(-1)  # (B, 1) -> (B,)


# ---------------------------------------------------------------------------------------------- 4. training


def train(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, lr: float, batch_size: int,
          seed: int = 0) -> list[float]:
    """Mini-batch training with Adam on the binary cross-entropy; returns the mean loss of each epoch.

    x: (N, D) float, y: (N,) float 0/1.
    """
    generator = torch.Generator().manual_seed(seed)  # our own generator: the shuffles repeat exactly
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)  # a new shuffle every epoch
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            loss = F.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            optimizer.zero_grad()  # gradients accumulate in .grad until cleared
            loss.backward()  # autograd: d loss / d parameter for every parameter
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    return losses


@torch.no_grad()  # no graph is needed to predict: faster, and less memory
def predict(model: nn.Module, x: Tensor) -> Tensor:
    """Class labels 0/1 (N,): a positive logit means p = sigmoid(logit) > 0.5."""
    model.eval()
    return (model(x) > 0).long()


def fit(x_train: Tensor, y_train: Tensor, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """Build and train the model on standardized features; returns it and its loss curve.

    x_train (N, 30) arrives already standardized: the grader passes it through your `standardize` first (and
    the held-out rows too, with the training statistics), so do not scale it again here.
    """
    torch.manual_seed(seed)  # the initial weights
    model = MLP(x_train.shape[1], n_hidden=32)
    losses = train(model, x_train, y_train, epochs=60, lr=1e-3, batch_size=32, seed=seed)
    return model, losses


# ---------------------------------------------------------------------------------------------- 5. the loss curve


def plot_loss_curve(losses: list[float], path: Path) -> None:
    """Save the training loss per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # draw to files, no window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, marker=".")
    ax.set(xlabel="epoch", ylabel="training loss (BCE)", title="Lab 1: loss curve", yscale="log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
