"""ByteCNN: a character-level convolutional network over raw UTF-8 bytes.

Zhang, Zhao & LeCun 2015, "Character-level Convolutional Networks for Text Classification"
(arXiv:1509.01626), with bytes instead of a 70-letter alphabet (so any language and invalid UTF-8 alike)::

    bytes (B, L) -> embedding (B, d, L) -> [conv k, ReLU, max-pool p] x n -> global max over time (B, c)
    [c per text, other inputs' mean embeddings, dense values] -> MLP -> logits

Rows of a batch are padded to its longest text. Positions past a row's end are zeroed after every block, so a
row's output does not depend on which rows share its batch (padding is exactly the convolution's own zero
padding). It is the accurate, expensive model: the teacher for ``bag``.
"""

from __future__ import annotations

import torch
from torch import nn

from shoal.config import ByteCNNConfig
from shoal.models.embeddings import SparseArch, mlp, squeeze_single
from shoal.models.registry import register

__all__ = ["ByteCNN", "pad_sequences"]


def pad_sequences(ids: torch.Tensor, offsets: torch.Tensor, min_length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Jagged ids (N,) with row starts (B,) -> padded (B, L) with 0 after each row's end, and lengths (B,)."""
    batch = offsets.shape[0]
    ends = torch.cat([offsets[1:], offsets.new_tensor([ids.shape[0]])])
    lengths = ends - offsets
    width = max(int(lengths.max()) if batch else 0, min_length)
    rows = torch.repeat_interleave(torch.arange(batch), lengths)
    cols = torch.arange(ids.shape[0]) - torch.repeat_interleave(offsets, lengths)
    padded = ids.new_zeros(batch, width)
    padded[rows, cols] = ids
    return padded, lengths


class _ConvStack(nn.Module):
    """Embedding + conv blocks over one byte sequence -> (B, channels[-1])."""

    def __init__(self, vocab: int, config: ByteCNNConfig) -> None:
        super().__init__()
        # torch's own init, but none on the meta device (a bundle's shape check), where normal_ imports torch._dynamo
        self.embedding = nn.Embedding(vocab, config.embedding_dim, padding_idx=0,
                                      _weight=torch.empty(vocab, config.embedding_dim))
        if not self.embedding.weight.is_meta:
            self.embedding.reset_parameters()
        sizes = [config.embedding_dim, *config.channels]
        self.convs = nn.ModuleList(nn.Conv1d(sizes[i], sizes[i + 1], config.kernel_size,
                                             padding=config.kernel_size // 2) for i in range(len(config.channels)))
        self.pool = config.pool
        self.kernel = config.kernel_size

    def forward(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embedding(padded).transpose(1, 2)  # (B, d, L)
        valid = lengths
        for i, conv in enumerate(self.convs):
            x = torch.relu(conv(x))[..., : x.shape[-1]]  # (B, c, L); an even kernel adds one column, cut it
            mask = torch.arange(x.shape[-1]) < valid.unsqueeze(1)  # (B, L)
            x = x * mask.unsqueeze(1)  # past the end: 0, as the convolution's own padding of a shorter batch
            if i < len(self.convs) - 1 and self.pool > 1:
                x = nn.functional.max_pool1d(x, self.pool, ceil_mode=True)  # a window past the end stays 0
                valid = torch.div(valid + self.pool - 1, self.pool, rounding_mode="floor")
        return x.amax(dim=-1)  # (B, c); ReLU outputs are >= 0, so the zeroed tail never wins the max


@register("bytecnn")
class ByteCNN(nn.Module):
    def __init__(self, config: ByteCNNConfig, dense_dim: int, buckets: list[int], outputs: int = 1,
                 sequences: list[int] | None = None) -> None:
        super().__init__()
        self.sequences = list(sequences or [])
        if not self.sequences:
            raise ValueError("bytecnn reads byte sequences: give at least one text feature `tokens: bytes`")
        self.bags = [k for k in range(len(buckets)) if k not in self.sequences]
        self.stacks = nn.ModuleList(_ConvStack(buckets[k], config) for k in self.sequences)
        self.sparse_arch = SparseArch([buckets[k] for k in self.bags], config.embedding_dim) if self.bags else None
        width = dense_dim + len(self.sequences) * config.channels[-1] + len(self.bags) * config.embedding_dim
        head = mlp([width, *config.hidden, outputs], final_activation=False)
        self.head = nn.Sequential(nn.Dropout(config.dropout), *head) if config.dropout else head
        self.min_length = config.pool ** (len(config.channels) - 1)

    def forward(self, dense: torch.Tensor, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        parts = [dense]
        for stack, k in zip(self.stacks, self.sequences, strict=True):
            parts.append(stack(*pad_sequences(ids[k], offsets[k], self.min_length)))
        if self.sparse_arch is not None:
            emb = self.sparse_arch([ids[k] for k in self.bags], [offsets[k] for k in self.bags])
            parts.append(emb.flatten(1))
        return squeeze_single(self.head(torch.cat(parts, dim=1)))  # (B,) or (B, C)
