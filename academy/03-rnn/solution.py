"""Lab 3, reference solution: recurrent networks and byte-level text.

Two-clause reviews in several languages and scripts, with asides ("the crème brûlée was not great, to be honest,
but the 寿司 seemed schön, this time 😀"), are read as raw UTF-8 bytes, with no vocabulary, by a GRU and by a small
byte CNN. The label is the sentiment of the clause after "but" (a "not" flips a clause), so word order decides: no
order-blind model can beat 0.645 held out. The GRU reads across the asides; the CNN's 9-byte window cannot, so it
is right only when nothing stands between the first clause and "but" (README: "What a window cannot see").
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

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
    rows = [list(t.encode("utf-8", errors="replace"))[:max_len] for t in texts]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    ids = torch.full((len(rows), max(int(lengths.max()), 1) if rows else 1), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long) + 1
    return ids, lengths


def decode(ids: Tensor) -> str:
    """The text of one row of token ids (padding dropped); bytes that are not valid UTF-8 (a character cut in
    half by max_len) become the replacement character U+FFFD instead of raising."""
    data = bytes(int(t) - 1 for t in ids.tolist() if t != PAD)
    return data.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------- 2. the models


class GRUClassifier(nn.Module):
    """Bytes -> embedding -> GRU -> the last real step's hidden state -> one logit per text, (B,)."""

    def __init__(self, vocab: int = VOCAB, emb: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb, padding_idx=PAD)
        self.gru = nn.GRU(emb, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        x = self.embed(ids)  # (B, T, E)
        # packing skips the padding: the GRU stops at each text's own last byte
        packed = pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)  # h: (layers, B, H), in the batch's original order
        return self.out(h[-1]).squeeze(-1)


class ByteCNN(nn.Module):
    """Bytes -> embedding -> Conv1d over byte windows -> ReLU -> max over the real positions -> logit (B,)."""

    def __init__(self, vocab: int = VOCAB, emb: int = 32, channels: int = 64, kernel: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb, padding_idx=PAD)
        self.conv = nn.Conv1d(emb, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.out = nn.Linear(channels, 1)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        mask = (torch.arange(ids.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1)  # (B, 1, T): real bytes
        x = self.embed(ids).transpose(1, 2)  # (B, E, T): Conv1d wants channels first
        h = F.relu(self.conv(x)) * mask  # (B, C, T); zero at the padding, as if the text ended there
        h = F.relu(self.conv2(h))  # (B, C, T)
        h = h.masked_fill(~mask, float("-inf")).amax(dim=2)  # (B, C): padding never wins the max
        return self.out(torch.nan_to_num(h, neginf=0.0)).squeeze(-1)  # an empty text pools to 0


# ---------------------------------------------------------------------------------------------- 3. training


def train_classifier(model: nn.Module, ids: Tensor, lengths: Tensor, labels: Tensor, *, epochs: int, lr: float,
                     batch_size: int, seed: int = 0) -> list[float]:
    """Mini-batch Adam on the binary cross-entropy; returns the mean loss of each epoch.

    ids (N, T), lengths (N,), labels (N,) float 0/1.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(ids), generator=generator)
        total = 0.0
        for start in range(0, len(ids), batch_size):
            idx = order[start:start + batch_size]
            width = int(lengths[idx].max())  # trim the batch to its longest text: less padding to run over
            loss = F.binary_cross_entropy_with_logits(model(ids[idx, :width], lengths[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # RNNs: a rare huge gradient would undo training
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / len(ids))
    return losses


def fit_gru(ids: Tensor, lengths: Tensor, labels: Tensor, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """A GRUClassifier trained on the data; returns (model, losses per epoch)."""
    torch.manual_seed(seed)
    model = GRUClassifier()  # a GRU steps through time one byte at a time: batches of 64 keep the steps few
    return model, train_classifier(model, ids, lengths, labels, epochs=8, lr=1.5e-2, batch_size=64, seed=seed)


def fit_cnn(ids: Tensor, lengths: Tensor, labels: Tensor, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """A ByteCNN trained on the data; returns (model, losses per epoch)."""
    torch.manual_seed(seed)
    model = ByteCNN()
    return model, train_classifier(model, ids, lengths, labels, epochs=8, lr=3e-3, batch_size=64, seed=seed)


# ---------------------------------------------------------------------------------------------- 4. the curves


def plot_curves(curves: dict[str, list[float]], path: Path) -> None:
    """The training loss per epoch of each model (name -> losses) on one figure, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, marker=".", label=name)
    ax.set(xlabel="epoch", ylabel="training loss (BCE)", title="Lab 3: GRU vs byte CNN", yscale="log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
