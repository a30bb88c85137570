"""The encoded batch: what every model consumes.

Sparse features are jagged: each row holds one id, or a list of ids. Per feature the batch keeps the flat
``ids`` and ``offsets`` (CSR style, length B + 1), as ``nn.EmbeddingBag`` and TorchRec's KeyedJaggedTensor
expect::

    row      feature "cats" (a list per row)     ids      = [7, 3, 9, 0, 4]
    0        [7, 3]                              offsets  = [0, 2, 3, 4, 5]
    1        [9]
    2        (missing -> reserved id 0)  [0]
    3        [4]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Batch", "ModelInputs"]

ModelInputs = tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]


@dataclass
class Batch:
    """Encoded rows, as numpy arrays (zero-copy into torch with :meth:`inputs`).

    Every row holds at least one id per feature (a missing value is the reserved id 0), so a feature with as
    many ids as rows has exactly one per row; such features share one ``offsets`` array (never mutated).
    """

    dense: np.ndarray  # (B, D_enc) float32: transformed dense values, then one missing flag per dense feature
    ids: list[np.ndarray]  # per sparse feature: (N_k,) int64 bucket ids, 0 = missing
    offsets: list[np.ndarray]  # per sparse feature: (B + 1,) int64, row b owns ids[offsets[b]:offsets[b+1]]
    label: np.ndarray | None  # (B,) float32 (0/1, class index or number), (B, T) 0/1 multilabel; None at predict
    lines: np.ndarray  # (B,) int64: line (or row number) of each row in its file
    truncated: int = 0  # text cells cut to their feature's max_bytes while encoding these rows
    weight: np.ndarray | None = None  # (B,) float32 weight of each row in the training loss; None: 1 each

    @property
    def trained_rows(self) -> int:
        """Rows that count in the training loss (weight > 0)."""
        return len(self) if self.weight is None else int(np.count_nonzero(self.weight))

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (shared offsets counted once)."""
        arrays = {id(a): a for a in [self.dense, self.lines, *self.ids, *self.offsets]}
        for extra in (self.label, self.weight):
            if extra is not None:
                arrays[id(extra)] = extra
        return sum(a.nbytes for a in arrays.values())

    def take(self, index: np.ndarray) -> Batch:
        """The rows at ``index`` (any order), jagged features gathered consistently."""
        ids, offsets = [], []
        shared: np.ndarray | None = None  # one offsets array serves every one-id-per-row feature
        for k_ids, k_off in zip(self.ids, self.offsets, strict=True):
            if len(k_ids) == len(self):  # every row holds at least one id, so: exactly one per row
                if shared is None:
                    shared = np.arange(len(index) + 1, dtype=np.int64)
                ids.append(k_ids[index])
                offsets.append(shared)
                continue
            starts, lengths = k_off[:-1][index], np.diff(k_off)[index]
            new_off = np.zeros(len(index) + 1, dtype=np.int64)
            np.cumsum(lengths, out=new_off[1:])
            gather = np.repeat(starts - new_off[:-1], lengths) + np.arange(new_off[-1])
            ids.append(k_ids[gather])
            offsets.append(new_off)
        return Batch(
            dense=self.dense[index], ids=ids, offsets=offsets,
            label=None if self.label is None else self.label[index], lines=self.lines[index],
            weight=None if self.weight is None else self.weight[index],
        )

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` as views of this batch's arrays (no copy)."""
        stop = min(stop, len(self))
        ids, offsets = [], []
        shared: np.ndarray | None = None
        for k_ids, k_off in zip(self.ids, self.offsets, strict=True):
            if len(k_ids) == len(self):  # one id per row
                if shared is None:
                    shared = np.arange(stop - start + 1, dtype=np.int64)
                ids.append(k_ids[start:stop])
                offsets.append(shared)
                continue
            first = k_off[start]
            ids.append(k_ids[first:k_off[stop]])
            offsets.append(k_off[start:stop + 1] - first)
        return Batch(dense=self.dense[start:stop], ids=ids, offsets=offsets,
                     label=None if self.label is None else self.label[start:stop], lines=self.lines[start:stop],
                     weight=None if self.weight is None else self.weight[start:stop])

    def inputs(self) -> ModelInputs:
        """(dense (B, D), ids per feature (N_k,), offsets per feature (B,)) as torch tensors."""
        return (
            torch.from_numpy(self.dense),
            [torch.from_numpy(i) for i in self.ids],
            [torch.from_numpy(o[:-1]) for o in self.offsets],
        )

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        """Join batches row-wise (offsets shifted so they stay CSR-consistent)."""
        if len(batches) == 1:
            return batches[0]
        ids, offsets = [], []
        rows = sum(len(b) for b in batches)
        shared: np.ndarray | None = None
        for k in range(len(batches[0].ids)):
            ids.append(np.concatenate([b.ids[k] for b in batches]))
            if len(ids[-1]) == rows:  # one id per row
                if shared is None:
                    shared = np.arange(rows + 1, dtype=np.int64)
                offsets.append(shared)
                continue
            parts, base = [np.zeros(1, np.int64)], 0
            for b in batches:
                parts.append(b.offsets[k][1:] + base)
                base += int(b.offsets[k][-1])
            offsets.append(np.concatenate(parts))
        labels = [b.label for b in batches]
        weighted = any(b.weight is not None for b in batches)
        return Batch(
            dense=np.concatenate([b.dense for b in batches]),
            ids=ids,
            offsets=offsets,
            label=None if any(lab is None for lab in labels) else np.concatenate(labels),  # type: ignore[arg-type]
            lines=np.concatenate([b.lines for b in batches]),
            weight=np.concatenate([np.ones(len(b), np.float32) if b.weight is None else b.weight for b in batches])
            if weighted else None,
        )
