"""Lab 3: recurrent networks and byte-level text.

Short reviews in several languages and scripts ("the crème brûlée was not great 🙁") are read as raw UTF-8
bytes, with no vocabulary, by a GRU and by a small byte CNN; the label is the review's sentiment, which a
negation ("not", "never") flips. Fill in every TODO, top to bottom, and run `shoal academy check 3` after each
one: the checks go in the same order as this file. README.md explains the ideas. make_reviews is given.
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
             "die Suppe", "the naïve plot", "the 寿司", "my room", "the señor's tapas", "the Zürich tram", "the app"]
_VERBS = ["was", "is", "seemed", "felt", "looked"]
_ADVERBS = ["", "", "really ", "very ", "truly ", "quite ", "so "]
_POSITIVE = ["good", "great", "wonderful", "lovely", "délicieux", "superb", "fantastic", "schön"]
_NEGATIVE = ["bad", "awful", "terrible", "bland", "rude", "mediocre", "horrible", "schlecht"]
_NEGATIONS = ["not ", "never "]
_OPENERS = ["", "", "", "honestly, ", "I think ", "well… ", "to be fair, ", "ok so ", "¡ay! "]
_ENDINGS = ["", "", ".", "!", "!!", " 😀", " 🙁", "...", " tbh", " at all"]


def make_reviews(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """n short reviews and their labels (1 positive, 0 negative): a positive word, unless negated."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        positive = rng.random() < 0.5
        negated = rng.random() < 0.3  # a third negated: the word alone gets you ~70 %
        word = rng.choice(_POSITIVE if positive else _NEGATIVE)
        negation = rng.choice(_NEGATIONS) if negated else ""
        texts.append(f"{rng.choice(_OPENERS)}{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {negation}"
                     f"{rng.choice(_ADVERBS)}{word}{rng.choice(_ENDINGS)}")
        labels.append(int(positive != negated))
    return texts, labels


# ---------------------------------------------------------------------------------------------- 1. text -> bytes


def encode(texts: list[str], max_len: int = 64) -> tuple[Tensor, Tensor]:
    """UTF-8 bytes of each text as tokens byte + 1, cut to max_len and padded with PAD = 0.

    Returns ids (B, T) long, T = the longest (cut) text, and lengths (B,) long. Text that is not valid
    Unicode (a lone surrogate such as "\\udc80") must not raise: its bad characters become "?".
    """
    # TODO: for each text: list(text.encode("utf-8", errors="replace"))[:max_len] (a list of ints 0..255);
    #       lengths = their lengths; ids = torch.full((B, T), PAD), each row's start filled with bytes + 1
    raise NotImplementedError("TODO: encode: UTF-8 bytes + 1, cut to max_len, padded with 0; and the lengths")


def decode(ids: Tensor) -> str:
    """The text of one row of token ids (padding dropped); bytes that are not valid UTF-8 (a character cut in
    half by max_len) become the replacement character U+FFFD instead of raising."""
    # TODO: bytes(t - 1 for the non-PAD tokens t).decode("utf-8", errors="replace")
    raise NotImplementedError("TODO: decode: drop the padding, subtract 1, decode the bytes with errors='replace'")


# ---------------------------------------------------------------------------------------------- 2. the models


class GRUClassifier(nn.Module):
    """Bytes -> embedding -> GRU -> the last real step's hidden state -> one logit per text, (B,)."""

    def __init__(self, vocab: int = VOCAB, emb: int = 32, hidden: int = 64) -> None:
        super().__init__()
        # TODO: nn.Embedding(vocab, emb, padding_idx=PAD), nn.GRU(emb, hidden, batch_first=True), nn.Linear(hidden, 1)
        raise NotImplementedError("TODO: create the GRUClassifier's layers (embedding, GRU, linear)")

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        # TODO: embed (B, T, E); pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        #       so the GRU stops at each text's last real byte; _, h = self.gru(packed); logits from h[-1], (B,)
        raise NotImplementedError("TODO: GRUClassifier.forward: embed, pack, GRU, linear on the last hidden state")


class ByteCNN(nn.Module):
    """Bytes -> embedding -> Conv1d over byte windows -> ReLU -> max over the real positions -> logit (B,)."""

    def __init__(self, vocab: int = VOCAB, emb: int = 32, channels: int = 64, kernel: int = 5) -> None:
        super().__init__()
        # TODO: nn.Embedding(vocab, emb, padding_idx=PAD), one or two nn.Conv1d(..., kernel, padding=kernel // 2),
        #       nn.Linear(channels, 1)
        raise NotImplementedError("TODO: create the ByteCNN's layers (embedding, Conv1d, linear)")

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        # TODO: embed, .transpose(1, 2) to (B, E, T), conv + relu -> (B, C, T); mask the padded positions
        #       (torch.arange(T) >= lengths[:, None]) with -inf, max over T, linear, squeeze to (B,).
        #       With two convolutions, also zero the first one's output at the padding before the second.
        raise NotImplementedError("TODO: ByteCNN.forward: embed, conv, relu, masked max over time, linear")


# ---------------------------------------------------------------------------------------------- 3. training


def train_classifier(model: nn.Module, ids: Tensor, lengths: Tensor, labels: Tensor, *, epochs: int, lr: float,
                     batch_size: int, seed: int = 0) -> list[float]:
    """Mini-batch Adam on the binary cross-entropy; returns the mean loss of each epoch.

    ids (N, T), lengths (N,), labels (N,) float 0/1.
    """
    # TODO: as in lab 1: a seeded torch.Generator for the shuffles, Adam, for each batch
    #       F.binary_cross_entropy_with_logits(model(ids[idx], lengths[idx]), labels[idx]), zero_grad, backward,
    #       (nn.utils.clip_grad_norm_(model.parameters(), 1.0) helps RNNs), step; the mean loss of each epoch
    raise NotImplementedError("TODO: write the training loop (shuffle, batches, zero_grad, backward, step)")


def fit_gru(ids: Tensor, lengths: Tensor, labels: Tensor, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """A GRUClassifier trained on the data; returns (model, losses per epoch)."""
    # TODO: torch.manual_seed(seed); your choice of epochs, lr and batch size (the check wants >= 0.9 held out)
    raise NotImplementedError("TODO: fit_gru: build a GRUClassifier, train it, return (model, losses)")


def fit_cnn(ids: Tensor, lengths: Tensor, labels: Tensor, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """A ByteCNN trained on the data; returns (model, losses per epoch)."""
    raise NotImplementedError("TODO: fit_cnn: build a ByteCNN, train it, return (model, losses)")


# ---------------------------------------------------------------------------------------------- 4. the curves


def plot_curves(curves: dict[str, list[float]], path: Path) -> None:
    """The training loss per epoch of each model (name -> losses) on one figure, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: one line per model (label=name), axes labelled, ax.legend(), fig.savefig(path), plt.close(fig)
    raise NotImplementedError("TODO: plot each model's losses against the epoch and save the figure to `path`")
