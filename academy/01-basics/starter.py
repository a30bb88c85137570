"""Lab 1: tensors, autograd, an MLP and its training loop on tabular data.

The task: tell malignant from benign breast tumours from 30 measurements of cell nuclei (scikit-learn's
bundled Wisconsin breast-cancer data, 569 rows). Fill in every TODO, top to bottom, and run
`shoal academy check 1` after each one: the checks go in the same order as this file.
README.md explains the ideas; each function's docstring says exactly what it must return.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (you will want F.relu and F.binary_cross_entropy_with_logits)
from torch import Tensor

# ---------------------------------------------------------------------------------------------- 1. tensors


def standardize(x_train: Tensor, x_other: Tensor) -> tuple[Tensor, Tensor]:
    """Scale every column to mean 0 and standard deviation 1, using the *training* rows' statistics.

    x_train: (N, D), x_other: (M, D) -> both standardized, same shapes. The held-out rows use the
    training mean and std: at serving time we only know what we saw in training.
    """
    # TODO: the column means and stds of x_train (reduce over dim=0; keepdim=True keeps a (1, D) shape
    #       that broadcasts over the rows), then return (x_train - mean) / std and (x_other - mean) / std.
    raise NotImplementedError("TODO: standardize both tensors with x_train's column mean and std")


# ---------------------------------------------------------------------------------------------- 2. autograd


def bce_with_logits_grad(logits: Tensor, targets: Tensor) -> Tensor:
    """The gradient of the mean binary cross-entropy with respect to the logits, derived by hand.

    loss = mean_i -[y_i log s(z_i) + (1 - y_i) log(1 - s(z_i))] with s = sigmoid.
    logits, targets: (N,) -> d loss / d logits: (N,). The check compares it with what autograd computes.
    """
    # TODO: differentiate on paper first. Hint: d s(z) / dz = s(z) (1 - s(z)), and the loss is a mean over N.
    raise NotImplementedError("TODO: return d loss / d logits, derived by hand (no .backward() here)")


# ---------------------------------------------------------------------------------------------- 3. the model


class MLP(nn.Module):
    """A multi-layer perceptron: (B, n_in) -> (B,) logits of the positive class.

    Two nn.Linear layers (n_in -> n_hidden -> 1) with a non-linearity between them.
    """

    def __init__(self, n_in: int, n_hidden: int = 32) -> None:
        super().__init__()
        # TODO: create the two layers here (assigning them to self registers their parameters)
        raise NotImplementedError("TODO: create the MLP's layers in __init__ (two nn.Linear)")

    def forward(self, x: Tensor) -> Tensor:
        # TODO: linear -> relu -> linear, then .squeeze(-1) so a (B, 1) output becomes (B,)
        raise NotImplementedError("TODO: MLP.forward: linear -> relu -> linear -> squeeze to (B,)")


# ---------------------------------------------------------------------------------------------- 4. training


def train(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, lr: float, batch_size: int,
          seed: int = 0) -> list[float]:
    """Mini-batch training on the binary cross-entropy; returns the mean loss of each epoch.

    x: (N, D) float, y: (N,) float 0/1. Returns a list of `epochs` floats.
    """
    # TODO: the training loop. One way:
    #   generator = torch.Generator().manual_seed(seed)       # shuffles that repeat exactly
    #   optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    #   for each epoch:
    #       order = torch.randperm(len(x), generator=generator)
    #       for each batch of indices idx in order (batch_size at a time):
    #           loss = F.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
    #           optimizer.zero_grad(); loss.backward(); optimizer.step()
    #       append the epoch's mean loss (a float: use loss.item()) to the list you return
    raise NotImplementedError("TODO: write the training loop (shuffle, batches, zero_grad, backward, step)")


@torch.no_grad()  # no graph is needed to predict: faster, and less memory
def predict(model: nn.Module, x: Tensor) -> Tensor:
    """Class labels 0/1, shape (N,): the label is 1 when the logit is positive (p = sigmoid(logit) > 0.5)."""
    # TODO: model.eval(), then compare the logits with 0 and convert the booleans with .long()
    raise NotImplementedError("TODO: predict labels 0/1 from the sign of the logits")


def fit(x_train: Tensor, y_train: Tensor, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """Build and train the model on standardized features; returns it and its loss curve.

    Your choice of width, epochs, learning rate and batch size: the check wants >= 0.93 accuracy on
    held-out rows, within the time limit.
    """
    # TODO: torch.manual_seed(seed), build MLP(x_train.shape[1], ...), train it, return (model, losses)
    raise NotImplementedError("TODO: fit: build an MLP, train it, return (model, losses)")


# ---------------------------------------------------------------------------------------------- 5. the loss curve


def plot_loss_curve(losses: list[float], path: Path) -> None:
    """Save the training loss per epoch as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")  # draw to files, no window
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: fig, ax = plt.subplots(); ax.plot(...); label the axes; fig.savefig(path); plt.close(fig)
    raise NotImplementedError("TODO: plot the losses against the epoch and save the figure to `path`")
