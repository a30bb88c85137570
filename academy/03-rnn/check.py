"""Lab 3's grader: `shoal academy check 3` runs these checks, in order, against your lab.py."""

from __future__ import annotations

import secrets

import torch
import torch.nn as nn
from torch import Tensor

from shoal.academy.figures import has_line
from shoal.academy.grader import (
    Check,
    CheckFailed,
    LabContext,
    expect_figure,
    expect_floats,
    expect_tensor,
    saved_figures,
)
from shoal.academy.reviews import (  # the grader's own copy of the lab's make_reviews, and its ceilings
    ORDER_BLIND_CEILING,
    WINDOW_CEILING,
    Review,
    draw_reviews,
    order_probes,
    reviews,
)

REQUIRES = ("matplotlib",)
GRU_TARGET = 0.95  # held out, all reviews: the reference GRU gets 1.000 (README: "Expected results")
CNN_TARGET = 0.85  # held out, near reviews only (where a 9-byte window sees "great but"): the reference ~0.94
GAP_TARGET = 0.15  # far reviews: the GRU's accuracy minus the byte CNN's; ~0.25 for the references (1.00 vs ~0.75)
CHANCE = 0.58  # below this a model has learned next to nothing (an order-blind one reaches 0.645)
TRAIN_ROWS, TEST_ROWS = 3000, 1000
MAX_LEN = 256  # the longest review is 168 bytes: nothing is cut


def _encode(texts: list[str], max_len: int = MAX_LEN) -> tuple[Tensor, Tensor]:
    rows = [list(t.encode("utf-8", errors="replace"))[:max_len] for t in texts]
    ids = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r) + 1
    return ids, torch.tensor([len(r) for r in rows])


def check_encode(ctx: LabContext) -> str:
    out = ctx.lab.encode(["café", "a😀", "ok"])
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed("encode should return a pair: (ids (B, T), lengths (B,))")
    lengths = expect_tensor(out[1], 'the lengths of encode(["café", "a😀", "ok"])', (3,))
    if lengths.tolist() == [4, 2, 2]:
        raise CheckFailed("your lengths count characters: count the UTF-8 bytes, len(text.encode('utf-8')) ('é' is 2 "
                          "bytes, '😀' is 4)")
    if lengths.tolist() != [5, 5, 2]:
        raise CheckFailed(f'the lengths of encode(["café", "a😀", "ok"]) should be [5, 5, 2] bytes, got '
                          f"{lengths.tolist()}")
    ids = expect_tensor(out[0], 'the ids of encode(["café", "a😀", "ok"])', (3, 5))
    if ids.dtype != torch.long:
        raise CheckFailed(f"ids should be a long tensor (nn.Embedding indexes with integers), got {ids.dtype}")
    expected, _ = _encode(["café", "a😀", "ok"])
    if torch.equal(ids, expected - 1) or torch.equal(ids[0], expected[0] - 1):
        raise CheckFailed("token ids are the bytes themselves: use byte + 1, so that 0 stays free for the padding")
    if not torch.equal(ids, expected):
        raise CheckFailed(f'encode(["café", ...]) row 0 is {ids[0].tolist()}, expected {expected[0].tolist()} (the '
                          f"UTF-8 bytes + 1); row 2 is {ids[2].tolist()}, expected {expected[2].tolist()} "
                          "(padded with 0)")
    cut, cut_lengths = ctx.lab.encode(["abcdefgh", "xy"], max_len=3)
    if tuple(cut.shape) != (2, 3) or cut_lengths.tolist() != [3, 2]:
        raise CheckFailed(f'encode(["abcdefgh", "xy"], max_len=3) should give ids (2, 3) and lengths [3, 2], got '
                          f"{tuple(cut.shape)} and {cut_lengths.tolist()}: cut each text's bytes to max_len")
    try:
        _, bad = ctx.lab.encode(["a\udc80b"])
    except UnicodeEncodeError:
        raise CheckFailed('encode("a\\udc80b") raised UnicodeEncodeError: a lone surrogate is not valid Unicode; '
                          'encode with text.encode("utf-8", errors="replace")') from None
    return f"café -> {ids[0].tolist()}, cut at max_len, invalid text becomes '?' ({bad.tolist()[0]} bytes)"


def check_decode(ctx: LabContext) -> str:
    ids, _ = _encode(["naïve 😀", "ok"])
    got = ctx.lab.decode(ids[1])
    if got != "ok":
        raise CheckFailed(f"decode of the padded row [{', '.join(map(str, ids[1].tolist()))}] should be 'ok', got "
                          f"{got!r}: drop the padding (0), subtract 1, bytes(...).decode('utf-8')")
    if ctx.lab.decode(ids[0]) != "naïve 😀":
        raise CheckFailed(f"decode(encode(['naïve 😀'])[0][0]) should give back 'naïve 😀', got "
                          f"{ctx.lab.decode(ids[0])!r}")
    cut, _ = _encode(["a😀"], max_len=3)  # the emoji's 4 bytes cut to 2: not valid UTF-8
    try:
        text = ctx.lab.decode(cut[0])
    except UnicodeDecodeError:
        raise CheckFailed("decode raised UnicodeDecodeError on a character cut in half by max_len: decode with "
                          "errors='replace' (the bad bytes become U+FFFD)") from None
    if not (isinstance(text, str) and text.startswith("a") and "\ufffd" in text):
        raise CheckFailed(f"decode of 'a' + half an emoji should be 'a\\ufffd', got {text!r}")
    return "round trip, padding dropped, a cut character becomes U+FFFD"


def _sample() -> tuple[Tensor, Tensor]:
    return _encode(["the café was great", "ok", "never good 🙁", "the 寿司 was not bad at all!"])


def _check_sequence_model(ctx: LabContext, name: str) -> tuple[nn.Module, str]:
    try:
        model = getattr(ctx.lab, name)()
    except TypeError as err:
        raise CheckFailed(f"{name}() should work with its default arguments: {err}") from None
    if not isinstance(model, nn.Module):
        raise CheckFailed(f"{name} should be a torch.nn.Module, got {type(model).__name__}")
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if not embeddings or embeddings[0].num_embeddings < 257:
        raise CheckFailed(f"{name} needs an nn.Embedding with 257 rows: 256 byte values + 1 for the padding")
    model.eval()
    ids, lengths = _sample()
    out = model(ids, lengths)
    if isinstance(out, Tensor) and tuple(out.shape) == (4, 1):
        raise CheckFailed(f"{name} returned shape (4, 1): squeeze the last dimension to one logit per text, (B,)")
    expect_tensor(out, f"{name}()(ids, lengths) for 4 texts", (4,))
    padded = torch.cat([ids, torch.zeros(4, 10, dtype=torch.long)], dim=1)  # the same texts, more padding
    with torch.no_grad():
        gap = (model(padded, lengths) - out).abs().max().item()
        alone = model(ids[1:2, : int(lengths[1])], lengths[1:2])
    if gap > 1e-4 or (alone - out[1]).abs().item() > 1e-4:
        fix = ("pack the batch with pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False) and "
               "use the final hidden state") if name == "GRUClassifier" else \
            "mask the padded positions: -inf before the max over time (and zeros between two convolutions)"
        raise CheckFailed(f"{name}'s output changes when the batch has more padding (by {max(gap, 1e-4):.2g}): the "
                          f"padding leaks into the result; {fix}")
    model.train()
    model.zero_grad()
    long_ids, long_lengths = _encode(["\x7f" + "ab" * 20])  # byte 0x7f occurs only at the first position
    model(long_ids, long_lengths).sum().backward()
    for pname, p in model.named_parameters():
        if p.grad is None:
            raise CheckFailed(f"parameter {pname} got no gradient: does forward use every layer?")
    grad = embeddings[0].weight.grad
    assert grad is not None
    if name == "GRUClassifier" and grad[0x7F + 1].abs().sum().item() == 0:
        raise CheckFailed(f"no gradient reaches the first byte of a 41-byte text: {name} does not look at the "
                          "whole text (for a GRU: the hidden state of the *last* real step carries it)")
    n = sum(p.numel() for p in model.parameters())
    return model, f"(4, T) -> (4,), padding-invariant, gradients flow; {n:,} parameters"


def check_gru(ctx: LabContext) -> str:
    model, note = _check_sequence_model(ctx, "GRUClassifier")
    if not any(isinstance(m, nn.GRU | nn.GRUCell) for m in model.modules()):
        raise CheckFailed("GRUClassifier should use an nn.GRU")
    return note.replace("gradients flow", "gradients reach the first byte")


def check_cnn(ctx: LabContext) -> str:
    model, note = _check_sequence_model(ctx, "ByteCNN")
    if not any(isinstance(m, nn.Conv1d) for m in model.modules()):
        raise CheckFailed("ByteCNN should use an nn.Conv1d over the byte positions")
    return note


def check_train(ctx: LabContext) -> str:
    texts, labels = reviews(1000, seed=7)
    ids, lengths = _encode(texts)
    torch.manual_seed(0)
    model = ctx.lab.ByteCNN()
    before = [p.detach().clone() for p in model.parameters()]
    losses = expect_floats(ctx.lab.train_classifier(model, ids, lengths, torch.tensor(labels, dtype=torch.float32),
                                                    epochs=4, lr=3e-3, batch_size=32, seed=0),
                           "train_classifier(model, ..., epochs=4)", 4)
    if all(torch.equal(p0, p.detach()) for p0, p in zip(before, model.parameters(), strict=True)):
        raise CheckFailed("train_classifier did not change the parameters: call loss.backward() and optimizer.step()")
    if not losses[-1] < 0.7 * losses[0]:
        raise CheckFailed(f"the loss did not go down enough ({losses[0]:.3f} -> {losses[-1]:.3f} in 4 epochs of a "
                          "ByteCNN): zero the gradients each step, use binary_cross_entropy_with_logits on the logits")
    return f"ByteCNN loss {losses[0]:.3f} -> {losses[-1]:.3f} in 4 epochs"


_LET_ORDER_IN = {
    "fit_gru": "run the embedded bytes through the GRU in order (packed) and classify its last hidden state, not a "
               "sum or mean of embeddings",
    "fit_cnn": "convolve the embedded bytes before the max over time (a window sees their order); pooling the "
               "embeddings themselves loses it",
}
_TRAIN_MORE = {
    "fit_gru": "a GRU must learn to carry a clause's sentiment across the aside after it: its loss sits near 0.69 "
               "for a few epochs, then falls. Train for more epochs or with a higher learning rate (the reference: 8 "
               "epochs at lr 1.5e-2, batches of 64)",
    "fit_cnn": "train for more epochs or with a higher learning rate (the reference: 8 epochs at lr 3e-3, batches of "
               "64)",
}


def _window(model: nn.Module) -> int:
    """The bytes one output of stacked Conv1d layers sees: 1 + the sum of (kernel - 1) * dilation."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    return 1 + sum((c.kernel_size[0] - 1) * c.dilation[0] for c in convs)


def held_out_reviews(ctx: LabContext) -> list[Review]:
    """TEST_ROWS reviews drawn afresh for each grading run (a seed no lab file can know), shared by its checks."""
    if "held_out" not in ctx.state:
        ctx.state["held_out"] = draw_reviews(TEST_ROWS, seed=1_000 + secrets.randbelow(2**31))
    rows: list[Review] = ctx.state["held_out"]
    return rows


def _fit(ctx: LabContext, fit: str, label: str, layer: type[nn.Module]) -> tuple[nn.Module, list[float]]:
    """``fit`` on TRAIN_ROWS reviews; the model (which must contain a ``layer``) is kept for the comparison."""
    texts, labels = reviews(TRAIN_ROWS, seed=0)
    ids, lengths = _encode(texts)
    out = getattr(ctx.lab, fit)(ids, lengths, torch.tensor(labels, dtype=torch.float32), seed=0)
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed(f"{fit} should return a pair: (the trained model, its list of losses per epoch)")
    model, losses = out
    if not isinstance(model, nn.Module) or not any(isinstance(m, layer) for m in model.modules()):
        raise CheckFailed(f"{fit} should return the model it trained, with its nn.{layer.__name__}; got "
                          f"{type(model).__name__}")
    if fit == "fit_cnn" and any(isinstance(m, nn.RNNBase) for m in model.modules()):
        raise CheckFailed("fit_cnn should train a ByteCNN, without a recurrent layer: the lab compares it with the GRU")
    ctx.state.setdefault("curves", {})[label] = expect_floats(losses, f"the losses {fit} returns")
    ctx.state.setdefault("models", {})[label] = model.eval()
    return model, ctx.state["curves"][label]


def _order_blind(model: nn.Module) -> bool:
    """The same output (to float rounding) for nearly every probe and its clauses swapped: the same bag of bytes."""
    texts, swapped = order_probes()
    with torch.no_grad():
        a, b = (model(*_encode(t)) for t in (texts, swapped))
    return bool(((a - b).abs() <= 1e-4 * (1 + a.abs())).float().mean() >= 0.95)


def _diagnose(model: nn.Module, accuracy: float, losses: list[float], fit: str, failed: str) -> str:
    """Why a model missed its bar: order-blind, next to nothing learned, a window too short, or not trained enough."""
    if _order_blind(model):
        return (f"{failed}: your model is order-blind, like a bag of words (swapping the two clauses does not change "
                f"its output): it cannot tell which clause follows 'but', nor which word a 'not' belongs to; no such "
                f"model can beat {ORDER_BLIND_CEILING:.3f} (README: 'Why order matters'), so more epochs will not "
                f"help. Let the order in: {_LET_ORDER_IN[fit]}")
    if accuracy < CHANCE:
        return (f"{failed}: {accuracy:.3f} overall is about a coin flip, so the model has learned next to nothing "
                f"(its last training loss is {losses[-1]:.3f}; ln 2 = 0.693 is guessing): {_TRAIN_MORE[fit]}")
    if fit == "fit_cnn" and _window(model) < 9:
        return (f"{failed}: your CNN's convolutions see {_window(model)} bytes at a time, too few to hold a "
                "sentiment word and the 'but' after it ('great but' is 9 bytes): stack two convolutions of kernel 5")
    return f"{failed} (it does read the order): does the training loss go down to near 0? {_TRAIN_MORE[fit]}"


def _accuracy(model: nn.Module, rows: list[Review]) -> dict[str, float]:
    """The model's held-out accuracy on all, near and far reviews."""
    ids, lengths = _encode([r.text for r in rows])
    with torch.no_grad():
        right = ((model(ids, lengths) > 0).long() == torch.tensor([r.label for r in rows])).float()
    far = torch.tensor([r.far for r in rows])
    return {"all": right.mean().item(), "near": right[~far].mean().item(), "far": right[far].mean().item()}


def check_gru_held_out(ctx: LabContext) -> str:
    model, losses = _fit(ctx, "fit_gru", "GRU", nn.GRU)
    acc = _accuracy(model, held_out_reviews(ctx))
    if acc["all"] < GRU_TARGET:
        raise CheckFailed(_diagnose(model, acc["all"], losses, "fit_gru",
                                    f"GRU held-out accuracy {acc['all']:.3f} < {GRU_TARGET}"))
    return (f"GRU: accuracy {acc['all']:.3f} >= {GRU_TARGET} on {TEST_ROWS} fresh reviews ({acc['far']:.3f} on the "
            f"far ones; no order-blind model can beat {ORDER_BLIND_CEILING:.3f})")


def check_cnn_held_out(ctx: LabContext) -> str:
    model, losses = _fit(ctx, "fit_cnn", "byte CNN", nn.Conv1d)
    acc = _accuracy(model, held_out_reviews(ctx))
    if acc["near"] < CNN_TARGET:
        raise CheckFailed(_diagnose(model, acc["all"], losses, "fit_cnn",
                                    f"byte CNN held-out accuracy {acc['near']:.3f} < {CNN_TARGET} on near reviews"))
    return (f"byte CNN: accuracy {acc['near']:.3f} >= {CNN_TARGET} on the near reviews, {acc['far']:.3f} on the far "
            f"ones, {acc['all']:.3f} overall")


def check_gru_beats_cnn(ctx: LabContext) -> str:
    far = [r for r in held_out_reviews(ctx) if r.far]
    gru, cnn = (_accuracy(ctx.state["models"][label], far)["all"] for label in ("GRU", "byte CNN"))
    scores = f"on the {len(far)} far reviews the GRU gets {gru:.3f}, the byte CNN {cnn:.3f}"
    if gru - cnn >= GAP_TARGET:
        return f"{scores}: the GRU wins by {gru - cnn:.2f} (a 9-byte window's ceiling there: {WINDOW_CEILING:.2f})"
    if cnn > WINDOW_CEILING + 0.05 or _window(ctx.state["models"]["byte CNN"]) > 9:
        raise CheckFailed(
            f"{scores}, a lead of {gru - cnn:.2f} < {GAP_TARGET}: your CNN sees further than the lesson's 9 bytes (its "
            f"convolutions add up to {_window(ctx.state['models']['byte CNN'])}), so it finds 'but' across the aside. "
            "The lab compares the README's ByteCNN, two convolutions of kernel 5, with the GRU: keep those (try a "
            "wider window in 'Going further')")
    raise CheckFailed(f"{scores}, a lead of {gru - cnn:.2f} < {GAP_TARGET}: the GRU should be right on nearly all of "
                      f"them (it reads across the aside): {_TRAIN_MORE['fit_gru']}")


def check_plot(ctx: LabContext) -> str:
    path = ctx.workdir / "training_curves.png"
    path.unlink(missing_ok=True)
    curves = dict(ctx.state["curves"])
    with saved_figures() as saved:
        ctx.lab.plot_curves({k: list(v) for k, v in curves.items()}, path)
    fig = expect_figure(saved, path, "the training curves")
    missing = [name for name, losses in curves.items() if not has_line(fig, losses)]
    if missing:
        raise CheckFailed(f"the plot does not show the losses of {' and '.join(missing)}: one line per model, "
                          "ax.plot(epochs, losses, label=name)")
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    if not all(any(name in text for text in legend) for name in curves):
        raise CheckFailed(f"add a legend that names each curve ({', '.join(curves)}): label=name, then ax.legend()")
    return f"{len(curves)} curves, labelled, in {path.name}"


GRU = "GRU: shapes, padding, gradient through time"
CNN = "byte CNN: shapes, masked pooling, gradients"
TRAIN = "training loop: the loss goes down"
GRU_HELD_OUT = f"held out: GRU accuracy >= {GRU_TARGET}"
CNN_HELD_OUT = f"held out: byte CNN accuracy >= {CNN_TARGET} on near reviews"
GRU_VS_CNN = f"far reviews: the GRU beats the byte CNN by >= {GAP_TARGET}"

CHECKS = [
    Check("bytes: UTF-8 encoding, padding, invalid text", check_encode, time_limit_s=10, hints=(
        "A text's tokens are its UTF-8 bytes (0..255) shifted by one, so that 0 can mean padding; the length is the "
        "number of bytes kept, not of characters.",
        "Per text: a list of ints, cut to max_len. Then ids (B, T) long, T = the longest kept row, zeros after each "
        "row's end; lengths (B,) long.",
        'rows = [list(t.encode("utf-8", errors="replace"))[:max_len] for t in texts]; fill ids[i, :len(r)] with '
        "torch.tensor(r) + 1",
    )),
    Check("bytes: decoding, invalid bytes safe", check_decode, time_limit_s=10, hints=(
        "Undo encode for one row: drop the padding, shift back, and let invalid bytes become U+FFFD.",
        'bytes(int(t) - 1 for t in ids.tolist() if t != PAD).decode("utf-8", errors="replace")',
    )),
    Check(GRU, check_gru, time_limit_s=10, hints=(
        "The GRU must stop at each text's own last byte, so that padding changes nothing: pack the batch.",
        "embed: (B, T) -> (B, T, E); pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False); "
        "the GRU returns (output, h) with h (layers, B, H), in the batch's order.",
        "_, h = self.gru(packed); return self.out(h[-1]).squeeze(-1)",
    )),
    Check(CNN, check_cnn, time_limit_s=10, hints=(
        "Conv1d wants channels first, and the max over time must never pick a padded position.",
        "(B, T, E) -> transpose(1, 2) -> (B, E, T) -> conv -> (B, C, T); mask = arange(T) < lengths[:, None], "
        "(B, 1, T) once unsqueezed.",
        'h.masked_fill(~mask, float("-inf")).amax(dim=2) -> (B, C); between two convolutions multiply by the mask',
    )),
    Check(TRAIN, check_train, time_limit_s=60, needs=(CNN,), hints=(
        "Per mini-batch: the model's logits, the binary cross-entropy with the labels, zero the old gradients, "
        "backward, clip the gradient norm (RNNs), step; per epoch a fresh shuffle from a seeded generator, and the "
        "mean of the batch losses.",
        "generator = torch.Generator().manual_seed(seed); order = torch.randperm(len(ids), generator=generator); "
        "idx = order[start:start + batch_size]; trim ids[idx] to lengths[idx].max() columns",
        "loss = F.binary_cross_entropy_with_logits(model(ids[idx, :width], lengths[idx]), labels[idx]); "
        "optimizer.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(model.parameters(), 1.0); "
        "optimizer.step(); total += loss.item() * len(idx)")),
    Check(GRU_HELD_OUT, check_gru_held_out, time_limit_s=120, needs=(GRU, TRAIN), hints=(
        "The label is the sentiment of the clause after 'but': a model must know which words come after it, and "
        "which word each 'not' belongs to. A bag of words cannot (README: 'Why order matters').",
        "A GRU must learn to carry a clause's sentiment across the aside that follows it: its loss sits near 0.69 for "
        "a few epochs, then falls to ~0. Adam at lr 1.5e-2, batches of 64 (fewer, faster steps in time), 8 epochs.",
    )),
    Check(CNN_HELD_OUT, check_cnn_held_out, time_limit_s=120, needs=(CNN, TRAIN), hints=(
        "A byte CNN sees order only inside its windows: two convolutions of kernel 5 see 9 bytes, enough to spot "
        "'great but' (the clause that does *not* decide) when no aside stands between them: the near reviews.",
        "Pool after the convolutions, never straight after the embedding; 8 epochs at lr 3e-3, batches of 64.",
    )),
    Check(GRU_VS_CNN, check_gru_beats_cnn, time_limit_s=30, needs=(GRU_HELD_OUT, CNN_HELD_OUT), hints=(
        "On a far review an aside stands between the first clause and 'but', and another follows the second: no "
        "9-byte window holds a sentiment word together with 'but' or the text's end, so the CNN cannot tell which "
        "clause decides (README: 'What a window cannot see'). The GRU reads across the asides.",
        "Keep the README's ByteCNN: two convolutions of kernel 5, no dilation. A wider window is for 'Going further'.",
    )),
    Check("plot: training_curves.png", check_plot, time_limit_s=30, needs=(GRU_HELD_OUT, CNN_HELD_OUT), hints=(
        "One figure, one line per model: its training loss against the epoch, with a legend naming the models "
        "and both axes labelled (a log scale shows the GRU's plateau and its fall).",
        "for name, losses in curves.items(): ax.plot(range(1, len(losses) + 1), losses, label=name); "
        "ax.set_xlabel('epoch'); ax.set_ylabel('training loss'); ax.legend(); fig.savefig(path)")),
]
