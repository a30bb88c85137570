"""Lab 3: recurrent networks and byte-level text.

Two-clause reviews in several languages and scripts, with asides ("the crème brûlée was not great, to be honest,
but the 寿司 seemed schön, this time 😀"), are read as raw UTF-8 bytes, with no vocabulary, by a GRU and by a small
byte CNN; the label is the sentiment of the clause after "but", so word order decides (README: "Why order matters",
"What a window cannot see"). Fill in every TODO, top to bottom,
and run `shoal academy check 3` after each one (`shoal academy hint 3` when stuck): the checks go in the same
order as this file. make_reviews is given.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch  # noqa: F401
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (F.relu, F.binary_cross_entropy_with_logits)
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: F401

PAD = 0  # byte b is token b + 1, so 0 is free for padding
VOCAB = 257

# ---------------------------------------------------------------------------------------------- 0. the data (given)

_SUBJECTS = ["the café", "our hotel", "the crème brûlée", "this film", "le service", "the ramen 🍜", "the staff",
             "die Suppe", "the plot", "the 寿司", "my room", "the tapas", "the tram", "the app"]
_VERBS = ["was", "is", "seemed", "felt", "looked"]
_POSITIVE = ["good", "great", "lovely", "délicieux", "superb", "schön"]
_NEGATIVE = ["bad", "awful", "bland", "rude", "horrible", "schlecht"]
_OPENERS = ["", "", "", "honestly, ", "well… ", "ok so ", "¡ay! "]
_ASIDES = ["to be honest", "if I am fair", "on the whole", "after a long wait", "for a Tuesday", "at first",
           "as my friend said", "in the evening", "all things considered", "this time", "ehrlich gesagt", "la verdad",
           "正直に言うと", "à vrai dire"]
_ENDINGS = ["", "", ".", "!", " 😀", " 🙁", "..."]


def _clause(rng: random.Random) -> tuple[str, int]:
    """ "the café was not great" and its sentiment: the word's, flipped by a "not" (3 clauses in 10)."""
    positive = rng.random() < 0.5
    negated = rng.random() < 0.3
    word = rng.choice(_POSITIVE if positive else _NEGATIVE)
    return f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {'not ' if negated else ''}{word}", int(positive != negated)


def _aside(rng: random.Random, parts: int) -> str:
    """`parts` asides after commas (", to be honest, this time"): noise, with no sentiment word and no "not"."""
    return "".join(f", {rng.choice(_ASIDES)}" for _ in range(parts))


def make_reviews(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """n reviews "<clause>[, <aside>,] but <clause>, <aside>" and their labels (1 positive, 0 negative): the clause
    after "but" decides.

    Half of the reviews (the "far" ones) have an aside of 1 or 2 parts between the first clause and "but"; every
    review has one after the second clause. Both clauses are drawn alike, so a model that ignores word order cannot
    tell which one decides: none can beat 64.5 % accuracy (README: "Why order matters")."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        opener = rng.choice(_OPENERS)
        (first, _), (second, label) = _clause(rng), _clause(rng)
        before = (_aside(rng, rng.choice((1, 2))) + ",") if rng.random() < 0.5 else ""
        texts.append(f"{opener}{first}{before} but {second}{_aside(rng, 1)}{rng.choice(_ENDINGS)}")
        labels.append(label)
    return texts, labels


# ---------------------------------------------------------------------------------------------- 1. text -> bytes


def encode(texts: list[str], max_len: int = 256) -> tuple[Tensor, Tensor]:
    """UTF-8 bytes of each text as tokens byte + 1, cut to max_len and padded with PAD = 0.

    Returns ids (B, T) long, T = the longest (cut) text, and lengths (B,) long. Text that is not valid
    Unicode (a lone surrogate such as "\\udc80") must not raise: its bad characters become "?".
    """
    # TODO: turn each text into its UTF-8 byte values (0..255), without raising on invalid text, and keep at most
    #       max_len of them. Tokens are bytes shifted by one so that PAD = 0 means "nothing".
    #       Shapes: ids (B, T) long, T = the longest kept text, zeros after each text's end; lengths (B,) long, the
    #       number of bytes kept (not of characters: "é" is 2 bytes). README: "Bytes, not words", "Padding".
    raise NotImplementedError("TODO: encode: UTF-8 bytes + 1, cut to max_len, padded with 0; and the lengths")


def decode(ids: Tensor) -> str:
    """The text of one row of token ids (padding dropped); bytes that are not valid UTF-8 (a character cut in
    half by max_len) become the replacement character U+FFFD instead of raising."""
    # TODO: the inverse of encode for one row (T,): drop the padding, undo the shift, and decode so that bytes
    #       which are not valid UTF-8 (a character cut by max_len) become U+FFFD instead of raising.
    raise NotImplementedError("TODO: decode: one row of ids (T,) back to its text, the inverse of encode; "
                              "invalid UTF-8 must give U+FFFD, not an error")


# ---------------------------------------------------------------------------------------------- 2. the models


class GRUClassifier(nn.Module):
    """Bytes -> embedding -> GRU -> the last real step's hidden state -> one logit per text, (B,)."""

    def __init__(self, vocab: int = VOCAB, emb: int = 32, hidden: int = 64) -> None:
        super().__init__()
        # TODO: three layers: an embedding of the vocab tokens into emb dimensions (the padding row a zero vector),
        #       a GRU from emb to hidden that takes batch-first input, and a linear map from hidden to one logit.
        raise NotImplementedError("TODO: create the GRUClassifier's layers (embedding, GRU, linear)")

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        # TODO: ids (B, T) -> embeddings (B, T, E) -> the GRU, reading each text in order and stopping at its own
        #       last real byte (so that padding changes nothing: pack the batch with its lengths) -> the final
        #       hidden state of the last layer, (B, H) -> one logit per text, (B,). README: "Recurrent networks".
        raise NotImplementedError("TODO: GRUClassifier.forward: embed, pack, GRU, linear on the last hidden state")


class ByteCNN(nn.Module):
    """Bytes -> embedding -> Conv1d over byte windows -> ReLU -> max over the real positions -> logit (B,)."""

    def __init__(self, vocab: int = VOCAB, emb: int = 32, channels: int = 64, kernel: int = 5) -> None:
        super().__init__()
        # TODO: an embedding as in the GRU; two 1-d convolutions over the byte positions (emb -> channels ->
        #       channels, each a window of `kernel` bytes, padded so that the length stays T: together they see
        #       2 * kernel - 1 = 9 bytes); a linear map from channels to 1.
        raise NotImplementedError("TODO: create the ByteCNN's layers (embedding, Conv1d, linear)")

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        # TODO: ids (B, T) -> embeddings -> (B, E, T) (convolutions want channels first) -> convolution + ReLU,
        #       (B, C, T) -> a max over time that padded positions can never win -> (B, C) -> one logit, (B,).
        #       Convolve *before* pooling: the windows are what sees the order of the bytes. Between the two
        #       convolutions, the padding must look like "the text ended" to the second one (zeros).
        #       README: "Byte CNNs".
        raise NotImplementedError("TODO: ByteCNN.forward: embed, conv, relu, masked max over time, linear")


# ---------------------------------------------------------------------------------------------- 3. training


def train_classifier(model: nn.Module, ids: Tensor, lengths: Tensor, labels: Tensor, *, epochs: int, lr: float,
                     batch_size: int, seed: int = 0) -> list[float]:
    """Mini-batch Adam on the binary cross-entropy; returns the mean loss of each epoch.

    ids (N, T), lengths (N,), labels (N,) float 0/1.
    """
    # TODO: the loop of lab 1, for sequences: each epoch, a new shuffle drawn from a generator seeded with `seed`;
    #       mini-batches of batch_size texts; Adam; the binary cross-entropy of the logits (B,) against labels (B,).
    #       RNNs sometimes meet a huge gradient: clip the gradients' norm before each step. Return one float per
    #       epoch, the mean loss over its texts. README: "Recurrent networks" (clipping).
    raise NotImplementedError("TODO: write the training loop (shuffle, batches, zero_grad, backward, step)")


def fit_gru(ids: Tensor, lengths: Tensor, labels: Tensor, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """A GRUClassifier trained on the data; returns (model, losses per epoch)."""
    # TODO: seed torch, build a GRUClassifier, train it with your choice of epochs, learning rate and batch size
    #       (the check wants >= 0.95 on unseen reviews within 120 s; a GRU steps through time, so fewer, larger
    #       batches are faster; its loss sits near 0.69 for a few epochs before it falls: README, "Recurrent
    #       networks"). Return (model, the losses per epoch).
    raise NotImplementedError("TODO: fit_gru: build a GRUClassifier, train it, return (model, losses)")


def fit_cnn(ids: Tensor, lengths: Tensor, labels: Tensor, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """A ByteCNN trained on the data; returns (model, losses per epoch)."""
    # TODO: as fit_gru, for a ByteCNN (it looks at all positions at once: many small batches are cheap).
    raise NotImplementedError("TODO: fit_cnn: build a ByteCNN, train it, return (model, losses)")


# ---------------------------------------------------------------------------------------------- 4. the curves


def plot_curves(curves: dict[str, list[float]], path: Path) -> None:
    """The training loss per epoch of each model (name -> losses) on one figure, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: one figure, one line per model (its losses against the epoch, named in a legend), labelled axes;
    #       save it as a PNG at `path` and close it. The grader reads the figure: it must show your losses.
    raise NotImplementedError("TODO: plot each model's losses against the epoch and save the figure to `path`")
