"""Lab 1's grader: `shoal academy check 1` runs these checks, in order, against your lab.py."""

from __future__ import annotations

import torch
import torch.autograd.functional
import torch.func
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from shoal.academy.figures import expect_series_plot
from shoal.academy.grader import (
    Check,
    CheckFailed,
    LabContext,
    expect_floats,
    expect_tensor,
    given_rows_only,
    sklearn_data_set,
    without,
)

REQUIRES = ("sklearn", "matplotlib")
ACCURACY_TARGET = 0.93
# what a gradient derived by hand may not call: autograd in any of its forms
AUTOGRAD = {"loss.backward()": [(torch.Tensor, "backward"), (torch.autograd, "backward")],
            "torch.autograd.grad": [(torch.autograd, "grad")],
            "torch.func": [(torch.func, "grad"), (torch.func, "vjp"), (torch.func, "jacrev")],
            "torch.autograd.functional": [(torch.autograd.functional, "vjp"), (torch.autograd.functional, "jacobian")]}
OWN_ROWS = ("learn from x_train and y_train only: a quarter of the 569 rows is kept back to measure how the model "
            "does on rows it never saw")


def check_standardize(ctx: LabContext) -> str:
    g = torch.Generator().manual_seed(0)
    x_train = torch.randn(50, 4, generator=g) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + torch.tensor([5.0, -2, 0, 100])
    x_other = x_train[:7].clone()
    out = ctx.lab.standardize(x_train, x_other)
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed("standardize should return a pair: (x_train standardized, x_other standardized)")
    a = expect_tensor(out[0], "standardize(x_train, x_other)[0]", (50, 4))
    b = expect_tensor(out[1], "standardize(x_train, x_other)[1]", (7, 4))
    if not torch.allclose(a.mean(dim=0), torch.zeros(4), atol=1e-4):
        means = [round(v, 3) for v in a.mean(dim=0).tolist()]
        raise CheckFailed(f"each training column should have mean 0 after standardize, got {means}: "
                          "subtract the column means x_train.mean(dim=0)")
    if not torch.allclose(a.std(dim=0), torch.ones(4), atol=0.03):
        stds = [round(v, 3) for v in a.std(dim=0).tolist()]
        raise CheckFailed(f"each training column should have std 1 after standardize, got {stds}: "
                          "divide by the column standard deviations x_train.std(dim=0)")
    if not torch.allclose(b, a[:7], atol=1e-4):
        raise CheckFailed("x_other must be scaled with the *training* mean and std (not its own): "
                          "the same row should give the same result in both")
    return "mean 0, std 1, held-out rows scaled with the training statistics"


def check_gradient(ctx: LabContext) -> str:
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(16, generator=g) * 2).requires_grad_()
    targets = torch.randint(0, 2, (16,), generator=g).float()
    F.binary_cross_entropy_with_logits(logits, targets).backward()
    expected = logits.grad
    assert expected is not None
    with without(ctx.lab, AUTOGRAD, "derive d loss / d logits on paper and write the formula with tensor operations"):
        out = ctx.lab.bce_with_logits_grad(logits.detach(), targets)
    got = expect_tensor(out, "bce_with_logits_grad(logits, targets)", (16,))
    if torch.allclose(got, expected, atol=1e-6):
        return "matches autograd"
    if torch.allclose(got, expected * 16, atol=1e-5):
        raise CheckFailed("your gradient is N times autograd's: the loss is a *mean* over N examples, divide by N")
    if torch.allclose(got, -expected, atol=1e-6):
        raise CheckFailed("your gradient has the wrong sign: it is (sigmoid(z) - y) / N")
    raise CheckFailed(f"your gradient differs from autograd's: got {got[:3].tolist()}..., expected "
                      f"{expected[:3].tolist()}...; use ds/dz = s(1 - s) to simplify the chain rule")


def check_mlp(ctx: LabContext) -> str:
    try:
        model = ctx.lab.MLP(30, 16)
    except TypeError as err:
        raise CheckFailed(f"MLP(n_in, n_hidden) should build a model from two numbers: {err}") from None
    if not isinstance(model, nn.Module):
        raise CheckFailed(f"MLP should be a torch.nn.Module, got {type(model).__name__}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(linears) < 2:
        raise CheckFailed(f"an MLP has at least two nn.Linear layers; found {len(linears)}")
    out = model(torch.randn(7, 30))
    if isinstance(out, Tensor) and tuple(out.shape) == (7, 1):
        raise CheckFailed("MLP returned shape (7, 1): squeeze the last dimension to return one logit per row, (B,)")
    expect_tensor(out, "MLP(30, 16)(x) for x of shape (7, 30)", (7,))
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(5, 30, generator=g) * 3, torch.randn(5, 30, generator=g) * 3
    with torch.no_grad():  # a linear (affine) model has f(a + b) - f(a) - f(b) + f(0) == 0
        gap = (model(a + b) - model(a) - model(b) + model(torch.zeros(5, 30))).abs().max().item()
    if gap < 1e-5:
        raise CheckFailed("your MLP is linear: stacked linear layers are still one linear map; "
                          "put a non-linearity such as torch.relu between them")
    model.zero_grad()
    model(torch.randn(7, 30)).sum().backward()
    for name, p in model.named_parameters():
        if p.grad is None:
            raise CheckFailed(f"parameter {name} got no gradient: does forward use every layer?")
    n = sum(p.numel() for p in model.parameters())
    return f"(7, 30) -> (7,), non-linear, {n:,} parameters"


def check_train(ctx: LabContext) -> str:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(256, 5, generator=g)
    y = (x @ torch.randn(5, generator=g) > 0).float()  # a separable problem: the loss can go far down
    torch.manual_seed(0)
    model = ctx.lab.MLP(5, 16)
    before = [p.detach().clone() for p in model.parameters()]
    losses = expect_floats(ctx.lab.train(model, x, y, epochs=20, lr=0.05, batch_size=32, seed=0),
                     "train(model, x, y, epochs=20, ...)", 20)
    if all(torch.equal(p0, p.detach()) for p0, p in zip(before, model.parameters(), strict=True)):
        raise CheckFailed("train did not change the parameters: call loss.backward() and then optimizer.step()")
    if not losses[-1] < 0.7 * losses[0]:
        raise CheckFailed(f"the loss did not go down enough ({losses[0]:.3f} -> {losses[-1]:.3f} in 20 epochs): "
                          "zero the gradients each step, use binary_cross_entropy_with_logits on the raw logits, "
                          "and pass model.parameters() to the optimizer")
    return f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in 20 epochs"


def check_predict(ctx: LabContext) -> str:
    model = ctx.lab.MLP(5, 16)
    x = torch.randn(40, 5)
    got = expect_tensor(ctx.lab.predict(model, x), "predict(model, x) for x of shape (40, 5)", (40,))
    if got.requires_grad:
        raise CheckFailed("predict built an autograd graph: decorate it with @torch.no_grad() (or use the context)")
    if not set(got.tolist()) <= {0, 1}:
        raise CheckFailed(f"predict should return labels 0 or 1, got values {sorted(set(got.tolist()))[:5]}")
    with torch.no_grad():
        expected = (model(x) > 0).long()
    if not torch.equal(got.long(), expected):
        raise CheckFailed("predict disagrees with the model: the label is 1 exactly when the logit is > 0")
    return "labels 0/1 from the sign of the logit"


def check_held_out(ctx: LabContext) -> str:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_tr, x_te, y_tr, y_te = train_test_split(data.data, data.target, test_size=0.25, random_state=0,
                                              stratify=data.target)
    x_tr, x_te = ctx.lab.standardize(torch.tensor(x_tr, dtype=torch.float32), torch.tensor(x_te, dtype=torch.float32))
    y_tr_t = torch.tensor(y_tr, dtype=torch.float32)
    loaders, folders = sklearn_data_set("load_breast_cancer")  # what fit may not use: it holds every row
    with given_rows_only(ctx.lab, loaders, folders, OWN_ROWS):
        out = ctx.lab.fit(x_tr, y_tr_t, seed=0)
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed("fit should return a pair: (the trained model, its list of losses per epoch)")
    model, losses = out
    ctx.state["losses"] = expect_floats(losses, "the losses fit returns")
    model.eval()
    with torch.no_grad():  # the grader predicts itself: the sign of the logit
        pred = (model(x_te) > 0).long()
    accuracy = (pred == torch.tensor(y_te)).float().mean().item()
    if accuracy < ACCURACY_TARGET:
        raise CheckFailed(f"held-out accuracy {accuracy:.3f} < {ACCURACY_TARGET}: train longer or change the "
                          "learning rate; does your training loss go down?")
    return f"accuracy {accuracy:.3f} >= {ACCURACY_TARGET} on {len(y_te)} held-out rows"


def check_plot(ctx: LabContext) -> str:
    path = ctx.workdir / "loss_curve.png"
    losses = ctx.state["losses"]
    expect_series_plot(ctx.lab.plot_loss_curve, losses, path, "the loss curve",
                       f"the loss curve does not show the {len(losses)} losses it was given: plot them as one line, "
                       "ax.plot(epochs, losses)")
    return f"{len(losses)} epochs plotted, axes labelled, in {path.name}"


STANDARDIZE = "tensors: standardize"
MODEL = "model: MLP shapes, non-linearity, gradients"
TRAIN = "training loop: the loss goes down"
HELD_OUT = f"held out: accuracy >= {ACCURACY_TARGET} (breast cancer)"

CHECKS = [
    Check(STANDARDIZE, check_standardize, time_limit_s=10, hints=(
        "Compute the statistics on the training rows only, one per column, and apply the same ones to both tensors.",
        "mean and std over dim=0 with keepdim=True: (N, D) -> (1, D), which broadcasts over the rows.",
        "return (x_train - mean) / std, (x_other - mean) / std",
    )),
    Check("autograd: the BCE gradient by hand", check_gradient, time_limit_s=10, hints=(
        "Per example, loss_i = -[y log s(z) + (1 - y) log(1 - s(z))]; the chain rule through s = sigmoid(z) "
        "gives d loss_i / d z_i. The loss is the mean over the N examples.",
        "d s / dz = s (1 - s). Substitute it: most terms cancel, leaving something that depends on s(z) and y only.",
        "d loss / d z_i = (sigmoid(z_i) - y_i) / N.")),
    Check(MODEL, check_mlp, time_limit_s=10, hints=(
        "Two nn.Linear layers assigned to self in __init__, and a ReLU between them in forward.",
        "self.hidden = nn.Linear(n_in, n_hidden); self.out = nn.Linear(n_hidden, 1); forward: "
        "self.out(F.relu(self.hidden(x))).squeeze(-1)",
    )),
    Check(TRAIN, check_train, time_limit_s=30, needs=(MODEL,), hints=(
        "Per batch: forward, loss, zero the old gradients, backward, step. Per epoch: a fresh shuffle and the mean "
        "of the batch losses.",
        "generator = torch.Generator().manual_seed(seed); optimizer = torch.optim.Adam(model.parameters(), lr=lr); "
        "order = torch.randperm(len(x), generator=generator); idx = order[start:start + batch_size]",
        "loss = F.binary_cross_entropy_with_logits(model(x[idx]), y[idx]); optimizer.zero_grad(); loss.backward(); "
        "optimizer.step(); total += loss.item() * len(idx)",
    )),
    Check("predict: labels from logits", check_predict, time_limit_s=10, needs=(MODEL,), hints=(
        "sigmoid(z) > 0.5 exactly when z > 0: the label comes from the logit's sign, no sigmoid needed. Predicting "
        "needs no gradients.",
        "@torch.no_grad() above def predict; return (model(x) > 0).long()")),
    Check(HELD_OUT, check_held_out, time_limit_s=120, needs=(STANDARDIZE, MODEL, TRAIN), hints=(
        "fit builds an MLP(x_train.shape[1], hidden) after torch.manual_seed(seed) and trains it with your train "
        "loop; 569 rows of 30 standardized numbers need a small network and a few dozen epochs.",
        "Watch the losses fit returns: falling steadily means more epochs help; jumping around means a smaller "
        "learning rate.",
        "MLP(x_train.shape[1], 32) trained 60 epochs at lr 1e-3, batch size 32, passes with room to spare.")),
    Check("plot: loss_curve.png", check_plot, time_limit_s=30, needs=(HELD_OUT,), hints=(
        "One line: the loss of each epoch against its number, both axes labelled, saved to the path given.",
        "fig, ax = plt.subplots(); ax.plot(range(1, len(losses) + 1), losses); ax.set_xlabel('epoch'); "
        "ax.set_ylabel('loss'); fig.savefig(path); plt.close(fig)")),
]
