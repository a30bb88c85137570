"""Lab 2's grader: `shoal academy check 2` runs these checks, in order, against your lab.py."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from shoal.academy.figures import images
from shoal.academy.grader import (
    Check,
    CheckFailed,
    CheckSkipped,
    LabContext,
    expect_figure,
    expect_floats,
    expect_tensor,
    given_rows_only,
    saved_figures,
    sklearn_data_set,
    without,
)

REQUIRES = ("sklearn", "matplotlib")
DIGITS_TARGET = 0.95
# MNIST: of the 10,000 test images, shuffled with a fixed seed, fit sees the first 3,000 and is graded on the last
# 2,000. The reference (channels (8, 16), 3 epochs at lr 6e-3, batches of 64: 9,000 image passes) scores 0.933 to
# 0.955 over seeds 0-9 (mean 0.946); the bar leaves 0.013 below its worst seed. Graded the same way, a model that
# ignores the image scores 0.115, the CNN after 1 epoch 0.878, a logistic regression on the pixels 0.901, an MLP
# (784-128-10) 0.911, an 8x8 CNN on the image pooled 4x 0.794: all fail. (The first edition fit 8,000 images for 5
# epochs, 40,000 passes, 0.971 against a bar of 0.95, in 4x the time; numbers in the lesson's "Get it checked".)
MNIST_TARGET = 0.92
MNIST_TRAIN, MNIST_HELD_OUT = 3_000, 2_000
# what conv2d by hand may not call: every library function that would slide the window for it
LIBRARY_CONV = {"F.conv2d": [(F, "conv2d"), (torch, "conv2d")], "F.conv1d": [(F, "conv1d"), (torch, "conv1d")],
                "F.conv3d": [(F, "conv3d"), (torch, "conv3d")], "F.unfold": [(F, "unfold")],
                "torch.convolution": [(torch, "convolution"), (torch, "_convolution")]}
BY_HAND = ("write the sliding window yourself: for each output position (i, j), multiply the patch "
           "x[:, :, i:i+kH, j:j+kW] by each filter and sum")
OWN_ROWS = ("learn from x_train and y_train only: the grader keeps other images back to measure how the model does "
            "on digits it never saw")


def _digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's 8x8 digits as (N, 1, 8, 8) floats in [0, 1]: a fixed, stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (N, 8, 8) -> (N, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return x_tr, x_te, y_tr, y_te


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format, gzipped): magic (2 zero bytes, dtype, ndim), ndim big-endian sizes, data."""
    with gzip.open(path) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _model(ctx: LabContext, image_size: int = 8) -> nn.Module:
    try:
        model = ctx.lab.CNN(image_size)
    except TypeError as err:
        raise CheckFailed(f"CNN(image_size) should build a model from the image size: {err}") from None
    if not isinstance(model, nn.Module):
        raise CheckFailed(f"CNN should be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(getattr(model, "conv1", None), nn.Conv2d):
        raise CheckFailed("the CNN's first layer should be an nn.Conv2d named conv1 (self.conv1 = nn.Conv2d(1, ...))")
    return model


def check_output_size(ctx: LabContext) -> str:
    cases = [((8, 3), 6), ((8, 3, 1, 1), 8), ((28, 5), 24), ((28, 3, 2, 1), 14), ((7, 2, 2), 3), ((32, 4, 4, 2), 9)]
    for args, expected in cases:
        got = ctx.lab.conv2d_output_size(*args)
        if got != expected:
            names = ", ".join(f"{k}={v}" for k, v in zip(("size", "kernel_size", "stride", "padding"), args,
                                                         strict=False))
            raise CheckFailed(f"conv2d_output_size({names}) returned {got}, expected {expected}: count how many "
                              "positions the kernel fits in the padded input, stepping by the stride")
    return f"{len(cases)} cases"


def _conv_inputs(requires_grad: bool) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 7, generator=g)  # a non-square image and kernel catch swapped indices
    w = torch.randn(4, 3, 3, 2, generator=g)
    b = torch.randn(4, generator=g)
    return x.requires_grad_(requires_grad), w.requires_grad_(requires_grad), b.requires_grad_(requires_grad)


def check_conv2d(ctx: LabContext) -> str:
    x, w, b = _conv_inputs(False)
    expected = F.conv2d(x, w, b)  # (2, 4, 4, 6)
    with without(ctx.lab, LIBRARY_CONV, BY_HAND):
        out = ctx.lab.conv2d(x, w, b)
    got = expect_tensor(out, "conv2d(x, weight, bias) for x (2, 3, 6, 7), weight (4, 3, 3, 2)", tuple(expected.shape))
    if torch.allclose(got, expected, atol=1e-4):
        return "matches F.conv2d"
    if torch.allclose(got, F.conv2d(x, w), atol=1e-4):
        raise CheckFailed("your convolution is right but the bias is missing: add bias[o] to every output pixel "
                          "of filter o")
    if torch.allclose(got, F.conv2d(x, w.flip(2, 3), b), atol=1e-4):
        raise CheckFailed("you flipped the kernel: deep learning's 'convolution' is a cross-correlation, "
                          "multiply each patch by the filter as it is")
    raise CheckFailed("your conv2d's values differ from nn.Conv2d's: out[b, o, i, j] = sum over c, k, l of "
                      "x[b, c, i + k, j + l] * weight[o, c, k, l], plus bias[o]")


def check_conv2d_grad(ctx: LabContext) -> str:
    x, w, b = _conv_inputs(True)
    r = torch.randn(2, 4, 4, 6, generator=torch.Generator().manual_seed(1))
    (F.conv2d(x, w, b) * r).sum().backward()
    expected = [t.grad for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    with without(ctx.lab, LIBRARY_CONV, BY_HAND):
        out = ctx.lab.conv2d(x, w, b)
    if not isinstance(out, Tensor) or not out.requires_grad:
        raise CheckFailed("autograd cannot follow your conv2d: build the output from torch operations on x, weight "
                          "and bias (no .item(), .numpy() or torch.tensor(...) of results)")
    (out * r).sum().backward()
    for name, t, e in zip(("x", "weight", "bias"), (x, w, b), expected, strict=True):
        if t.grad is None or not torch.allclose(t.grad, e, atol=1e-4):
            raise CheckFailed(f"the gradient with respect to {name} differs from nn.Conv2d's: is {name} used in "
                              "every output pixel, exactly once per term?")
    return "d/dx, d/dweight, d/dbias match F.conv2d"


def check_cnn(ctx: LabContext) -> str:
    model = _model(ctx)
    out = expect_tensor(model(torch.randn(5, 1, 8, 8)), "CNN(8)(x) for x of shape (5, 1, 8, 8)", (5, 10))
    out.sum().backward()
    for name, p in model.named_parameters():
        if p.grad is None:
            raise CheckFailed(f"parameter {name} got no gradient: does forward use every layer?")
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    n = sum(p.numel() for p in model.parameters())
    return f"(5, 1, 8, 8) -> (5, 10), {convs} conv layers, {n:,} parameters"


def check_feature_maps(ctx: LabContext) -> str:
    model = _model(ctx)
    conv: nn.Conv2d = model.conv1
    x = torch.randn(3, 1, 8, 8)
    side = [(8 + 2 * int(conv.padding[i]) - conv.kernel_size[i]) // conv.stride[i] + 1
            for i in (0, 1)]
    shape = (3, conv.out_channels, side[0], side[1])
    got = expect_tensor(ctx.lab.feature_maps(model, x), "feature_maps(model, x) for x of shape (3, 1, 8, 8)", shape)
    with torch.no_grad():
        raw = conv(x)
    if not (torch.allclose(got, raw, atol=1e-5) or torch.allclose(got, F.relu(raw), atol=1e-5)):
        raise CheckFailed("feature_maps should return the output of model.conv1 (after its ReLU, if you like)")
    return f"{shape[1]} maps of {shape[2]}x{shape[3]}"


def check_train(ctx: LabContext) -> str:
    x, _, y, _ = _digits()
    x, y = x[:320], y[:320]
    torch.manual_seed(0)
    model = _model(ctx)
    before = [p.detach().clone() for p in model.parameters()]
    losses = expect_floats(ctx.lab.train(model, x, y, epochs=5, lr=3e-3, batch_size=32, seed=0),
                           "train(model, x, y, epochs=5, ...)", 5)
    if all(torch.equal(p0, p.detach()) for p0, p in zip(before, model.parameters(), strict=True)):
        raise CheckFailed("train did not change the parameters: call loss.backward() and then optimizer.step()")
    if not losses[-1] < 0.7 * losses[0]:
        raise CheckFailed(f"the loss did not go down enough ({losses[0]:.3f} -> {losses[-1]:.3f} in 5 epochs on "
                          "320 digits with lr=3e-3, a learning rate for Adam): use F.cross_entropy on the raw "
                          "logits, zero the gradients every step, and torch.optim.Adam")
    return f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in 5 epochs"


def check_predict(ctx: LabContext) -> str:
    model = _model(ctx)
    x = torch.randn(40, 1, 8, 8)
    got = expect_tensor(ctx.lab.predict(model, x), "predict(model, x) for x of shape (40, 1, 8, 8)", (40,))
    if got.requires_grad:
        raise CheckFailed("predict built an autograd graph: decorate it with @torch.no_grad()")
    with torch.no_grad():
        model.eval()
        expected = model(x).argmax(dim=1)
    if not torch.equal(got.long(), expected):
        raise CheckFailed("predict should return the class with the largest logit: logits.argmax(dim=1)")
    return "class ids from argmax"


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    with torch.no_grad():  # the grader predicts itself: the largest logit
        return (model(x).argmax(dim=1) == y).float().mean().item()


def _fit(ctx: LabContext, x: Tensor, y: Tensor, image_size: int) -> tuple[nn.Module, list[float]]:
    """The learner's fit on the training rows, with the whole data sets out of its reach: scikit-learn's digits
    (loader and files) and the shared data folder (MNIST)."""
    loaders, folders = sklearn_data_set("load_digits")
    with given_rows_only(ctx.lab, loaders, [*folders, ctx.data_dir], OWN_ROWS):
        out = ctx.lab.fit(x, y, image_size=image_size, seed=0)
    if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[0], nn.Module):
        raise CheckFailed("fit should return a pair: (the trained model, its list of losses per epoch)")
    return out[0], expect_floats(out[1], "the losses fit returns")


def check_held_out(ctx: LabContext) -> str:
    x_tr, x_te, y_tr, y_te = _digits()
    model, _ = _fit(ctx, x_tr, y_tr, image_size=8)
    accuracy = _accuracy(model, x_te, y_te)
    if accuracy < DIGITS_TARGET:
        raise CheckFailed(f"held-out accuracy {accuracy:.3f} < {DIGITS_TARGET}: train for more epochs, try another "
                          "learning rate, or add channels (the pixels are in [0, 1]: no scaling needed)")
    ctx.state["model"], ctx.state["image"] = model, x_te[0]
    return f"accuracy {accuracy:.3f} >= {DIGITS_TARGET} on {len(y_te)} held-out digits"


def _shown(panels: list[np.ndarray], wanted: np.ndarray) -> int:
    """How many of the arrays ``wanted[k]`` appear among the image panels (as drawn, to float32 precision)."""
    return sum(any(p.shape == w.shape and np.allclose(p, w, atol=1e-5) for p in panels) for w in wanted)


def check_plot_filters(ctx: LabContext) -> str:
    path = ctx.workdir / "filters.png"
    path.unlink(missing_ok=True)
    model = ctx.state["model"]
    with saved_figures() as saved:
        ctx.lab.plot_filters(model, path)
    fig = expect_figure(saved, path, "the filters plot", labelled=False)
    filters = model.conv1.weight.detach()[:, 0].numpy()  # (c1, kH, kW): one input channel
    found = _shown(images(fig), filters)
    if found < len(filters):
        raise CheckFailed(f"the filters plot shows {found} of conv1's {len(filters)} filters: draw each filter "
                          "model.conv1.weight[k, 0] as its own small image (ax.imshow), unscaled")
    return f"{found} filters of {filters.shape[1]}x{filters.shape[2]} drawn in {path.name}"


def check_plot_feature_maps(ctx: LabContext) -> str:
    path = ctx.workdir / "feature_maps.png"
    path.unlink(missing_ok=True)
    model, image = ctx.state["model"], ctx.state["image"]
    with saved_figures() as saved:
        ctx.lab.plot_feature_maps(model, image.clone(), path)
    fig = expect_figure(saved, path, "the feature-maps plot", labelled=False)
    with torch.no_grad():
        raw = model.conv1(image.unsqueeze(0))[0].numpy()  # (c1, H', W')
    panels = images(fig)
    found = max(_shown(panels, raw), _shown(panels, np.maximum(raw, 0)))
    if found < len(raw):
        raise CheckFailed(f"the feature-maps plot shows {found} of the {len(raw)} maps of conv1 for the image it was "
                          "given: draw each channel of feature_maps(model, image.unsqueeze(0))[0] as an image")
    note = " and the input" if _shown(panels, image.numpy()) else ""
    return f"{found} feature maps{note} drawn in {path.name}"


def check_mnist(ctx: LabContext) -> str:
    folder = ctx.data_dir / "mnist_test"
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        raise CheckSkipped(f"optional: MNIST not found at {folder}")
    images = _read_idx(folder / "t10k-images-idx3-ubyte.gz")  # (10000, 28, 28) uint8
    labels = _read_idx(folder / "t10k-labels-idx1-ubyte.gz")  # (10000,)
    order = np.random.default_rng(0).permutation(len(images))
    x = torch.tensor(images[order] / 255.0, dtype=torch.float32).unsqueeze(1)  # (N, 1, 28, 28)
    y = torch.tensor(labels[order].astype(np.int64))
    model, _ = _fit(ctx, x[:MNIST_TRAIN], y[:MNIST_TRAIN], image_size=28)
    accuracy = _accuracy(model, x[-MNIST_HELD_OUT:], y[-MNIST_HELD_OUT:])
    if accuracy < MNIST_TARGET:
        raise CheckFailed(f"MNIST held-out accuracy {accuracy:.3f} < {MNIST_TARGET}: does CNN(28) size its linear "
                          "layer with conv2d_output_size? train longer if the loss is still falling")
    return f"accuracy {accuracy:.3f} >= {MNIST_TARGET} on {MNIST_HELD_OUT:,} held-out MNIST digits"


CONV = "convolution by hand matches nn.Conv2d"
MODEL = "model: CNN shapes and gradients"
TRAIN = "training loop: the loss goes down"
HELD_OUT = f"held out: accuracy >= {DIGITS_TARGET} (8x8 digits)"

CHECKS = [
    Check("shapes: conv2d_output_size", check_output_size, time_limit_s=10, hints=(
        "Draw it: a row of size + 2 * padding cells; the kernel covers kernel_size of them and moves stride cells at "
        "a time. Its first position is 0, its last the one where it ends at the row's end.",
        "The last start is size + 2 * padding - kernel_size; the starts 0, stride, 2 * stride, ... up to it.",
        "return (size + 2 * padding - kernel_size) // stride + 1")),
    Check(CONV, check_conv2d, time_limit_s=10, hints=(
        "Start from the definition: out[b, o, i, j] = sum over c, k, l of x[b, c, i + k, j + l] * weight[o, c, k, l] "
        "+ bias[o]. The output is (B, C_out, H - kH + 1, W - kW + 1).",
        "Loop over the output positions (i, j) only; for each, take the patch x[:, :, i:i+kH, j:j+kW] (B, C, kH, kW) "
        "and contract it with weight (C_out, C, kH, kW) over C, kH and kW.",
        "torch.einsum('bckl,ockl->bo', patch, weight) + bias gives the (B, C_out) values of position (i, j); write "
        "them into out[:, :, i, j] of a tensor made with x.new_zeros(...).")),
    Check("autograd: gradients through your conv2d", check_conv2d_grad, time_limit_s=10, needs=(CONV,), hints=(
        "Autograd follows only torch operations on the tensors it was given: build the output from x, weight and "
        "bias with indexing, multiplication and sums, never from Python numbers (.item(), .tolist()) or "
        "torch.tensor(...) of results.",
        "Collect the output pieces in a list and torch.stack them (or write into a tensor made with torch.zeros "
        "and assign slices): both keep the graph; then add bias.view(1, -1, 1, 1).")),
    Check(MODEL, check_cnn, time_limit_s=10, hints=(
        "Follow the shapes of an 8x8 image: a padded 3x3 convolution keeps 8x8, a 2x2 pool halves it to 4x4, the "
        "next pair gives 2x2; with C channels the linear layer sees C * 2 * 2 numbers per image.",
        "self.conv1 = nn.Conv2d(1, c1, kernel_size=3, padding=1), self.conv2 = nn.Conv2d(c1, c2, 3, padding=1); "
        "s = conv2d_output_size(image_size, 3, 1, 1) // 2, twice; self.head = nn.Linear(c2 * s * s, n_classes).",
        "forward: F.max_pool2d(F.relu(self.conv1(x)), 2), the same with conv2, then self.head(x.flatten(1)).")),
    Check("feature maps: the first layer's output", check_feature_maps, time_limit_s=10, needs=(MODEL,), hints=(
        "What the first layer computes for x, before the first pool.",
        "return F.relu(model.conv1(x))")),
    Check(TRAIN, check_train, time_limit_s=30, needs=(MODEL,), hints=(
        "Lab 1's loop, with a loss for 10 classes that takes the raw logits (B, 10) and the class ids (B,).",
        "loss = F.cross_entropy(model(x[idx]), y[idx]); optimizer.zero_grad(); loss.backward(); optimizer.step()")),
    Check("predict: class ids from logits", check_predict, time_limit_s=10, needs=(MODEL,), hints=(
        "The class is the position of the largest of the 10 logits of each row.",
        "model.eval(); return model(x).argmax(dim=1)")),
    Check(HELD_OUT, check_held_out, time_limit_s=120, needs=(MODEL, TRAIN), hints=(
        "fit seeds torch, builds CNN(image_size) and trains it with your train loop; 8x8 digits with pixels in "
        "[0, 1] need no scaling, a couple of thousand images need a couple of dozen epochs.",
        "Watch the losses fit returns: still falling at the end means more epochs; jumping means a smaller lr.",
        "CNN(8, channels=(16, 32)) trained 20 epochs at lr 3e-3, batch size 32, passes with room to spare.")),
    Check("plot: filters.png", check_plot_filters, time_limit_s=30, needs=(HELD_OUT,), hints=(
        "One small image per filter of conv1: its weight is (C_out, 1, kH, kW).",
        "plt.subplots(rows, cols) gives a grid of axes; ax.imshow(model.conv1.weight[k, 0].detach().numpy()) on "
        "the k-th, then fig.savefig(path).")),
    Check("plot: feature_maps.png", check_plot_feature_maps, time_limit_s=30, needs=(HELD_OUT,), hints=(
        "feature_maps(model, image.unsqueeze(0))[0] is (c1, S', S'): one small image per channel, and the input.",
        "fig, axes = plt.subplots(rows, cols); axes.flat[0].imshow(image[0]); axes.flat[k + 1].imshow(maps[k]) for "
        "each k; fig.savefig(path); plt.close(fig)")),
    Check(f"MNIST: accuracy >= {MNIST_TARGET} (28x28, optional)", check_mnist, time_limit_s=120, needs=(HELD_OUT,),
          hints=(
              "28x28 images are 12x the pixels of 8x8 ones: the same fit must size the linear layer from image_size "
              "(conv2d_output_size) and stay within the time limit.",
              "For image_size > 8: fewer channels (8, 16), 3 epochs at lr 6e-3 and batches of 64 are enough for the "
              "3,000 training images.")),
]
