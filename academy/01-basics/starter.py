"""Lab 1: tensors, autograd, an MLP and its training loop on tabular data.

The task: tell malignant from benign breast tumours from 30 measurements of cell nuclei (scikit-learn's
bundled Wisconsin breast-cancer data, 569 rows). Fill in every TODO, top to bottom, and run
`shoal academy check 1` after each one (`shoal academy hint 1` when stuck): the checks go in the same order as
this file. README.md explains the ideas; each function's docstring says exactly what it must return.
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
    # TODO: give every feature (column) mean 0 and std 1 on the training rows, and move the other rows by the
    #       same amounts. Statistics per column: (N, D) -> (1, D), a shape that broadcasts over the rows.
    #       README: "Standardization", "Tensors" (broadcasting).
    raise NotImplementedError("TODO: standardize both tensors with x_train's column mean and std")


# ---------------------------------------------------------------------------------------------- 2. autograd


def bce_with_logits_grad(logits: Tensor, targets: Tensor) -> Tensor:
    """The gradient of the mean binary cross-entropy with respect to the logits, derived by hand.

    loss = mean_i -[y_i log s(z_i) + (1 - y_i) log(1 - s(z_i))] with s = sigmoid.
    logits, targets: (N,) -> d loss / d logits: (N,). The check compares it with what autograd computes.
    """
    # TODO: differentiate the loss on paper, one logit at a time: d s(z) / dz = s(z) (1 - s(z)), and each z_i
    #       appears in only one term of a mean over N. The result has one value per logit, (N,), and needs no
    #       autograd: the check runs without it. README: "Autograd".
    raise NotImplementedError("TODO: return d loss / d logits, derived by hand (no .backward() here)")


# ---------------------------------------------------------------------------------------------- 3. the model


class MLP(nn.Module):
    """A multi-layer perceptron: (B, n_in) -> (B,) logits of the positive class.

    Two nn.Linear layers (n_in -> n_hidden -> 1) with a non-linearity between them.
    """

    def __init__(self, n_in: int, n_hidden: int = 32) -> None:
        super().__init__()
        # TODO: a hidden layer from n_in features to n_hidden units and an output layer from n_hidden to 1 logit.
        #       Assign them to self: that is what registers their parameters. README: "The MLP".
        raise NotImplementedError("TODO: create the MLP's layers in __init__ (two nn.Linear)")

    def forward(self, x: Tensor) -> Tensor:
        # TODO: x (B, n_in) -> hidden (B, n_hidden) -> a non-linearity (without it, two layers are one linear
        #       map) -> (B, 1) -> one logit per row, (B,).
        raise NotImplementedError("TODO: MLP.forward: linear -> relu -> linear -> squeeze to (B,)")


# ---------------------------------------------------------------------------------------------- 4. training


def train(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, lr: float, batch_size: int,
          seed: int = 0) -> list[float]:
    """Mini-batch training on the binary cross-entropy; returns the mean loss of each epoch.

    x: (N, D) float, y: (N,) float 0/1. Returns a list of `epochs` floats.
    """
    # TODO: the training loop. Each epoch visits every row once in a new random order (drawn from a generator
    #       seeded with `seed`, so that a run repeats exactly), in mini-batches of batch_size rows: the logits
    #       (B,) against the targets (B,) with the binary cross-entropy (on logits: it is the stable form), then
    #       one optimizer step (Adam, lr) on fresh gradients. Return one float per epoch: its mean loss.
    #       README: "The training loop".
    raise NotImplementedError("TODO: write the training loop (shuffle, batches, zero_grad, backward, step)")


@torch.no_grad()  # no graph is needed to predict: faster, and less memory
def predict(model: nn.Module, x: Tensor) -> Tensor:
    """Class labels 0/1, shape (N,): the label is 1 when the logit is positive (p = sigmoid(logit) > 0.5)."""
    # TODO: put the model in evaluation mode; a row's label is 1 when its logit is positive (sigmoid > 0.5),
    #       as integers, shape (N,).
    raise NotImplementedError("TODO: predict labels 0/1 from the sign of the logits")


def fit(x_train: Tensor, y_train: Tensor, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """Build and train the model on standardized features; returns it and its loss curve.

    x_train (N, 30) arrives already standardized: the grader passes it through your `standardize` first (and
    the held-out rows too, with the training statistics), so do not scale it again here.

    Your choice of width, epochs, learning rate and batch size: the check wants >= 0.93 accuracy on
    held-out rows, within the time limit.
    """
    # TODO: seed torch (the initial weights are random), build an MLP for x_train's number of features, train it
    #       with your choice of hyperparameters, return (model, the losses per epoch). README: "Held-out evaluation".
    raise NotImplementedError("TODO: fit: build an MLP, train it, return (model, losses)")


# ---------------------------------------------------------------------------------------------- 5. the loss curve


def plot_loss_curve(losses: list[float], path: Path) -> None:
    """Save the training loss per epoch as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")  # draw to files, no window
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: one figure of the loss against the epoch, with labelled axes; save it as a PNG at `path` and close it.
    #       The grader reads the figure: it must show your losses.
    raise NotImplementedError("TODO: plot the losses against the epoch and save the figure to `path`")
