"""The inputs an exported ONNX graph takes: the padded (or flat) form of a batch's sparse inputs.

A :class:`~shoal.data.batch.Batch` keeps each sparse input jagged (flat ids + offsets). ONNX has no fast
jagged embedding bag (``nn.EmbeddingBag`` exports as a ``Loop``), so the graph takes, per input::

    one id per row (sparse without separator, bins)       a list per row (separator, text n-grams)
    single_ids (B, S): column j = that input's ids        ids_k (B, L_k)      weights_k (B, L_k)
                                                          [[7, 3, 0],         [[.5, .5, 0],
                                                           [9, 0, 0],          [ 1,  0, 0],
                                                           [4, 8, 2]]          [.33,.33,.33]]

``weights_k`` is the mean-pooling mask: 1/len for each of a row's ids, 0 for padding (whose id, 0, is any
valid row). Input names are stable: ``dense`` (B, D) float32, ``single_ids`` (B, S) int64, and for each list
input ``k`` (its position in the batch's ``ids``) ``ids_k`` (B, L_k) int64 and ``weights_k`` (B, L_k) float32.
:mod:`shoal.export.padded` builds the graph that takes them; :mod:`shoal.runtime.onnx` feeds it.

The raw graph (:mod:`shoal.export.raw`) computes its ids itself and takes bag inputs FLAT instead (the layout's
``flat`` positions), so nothing is padded: ``ids_k`` (M_k,) int64, ``weights_k`` (M_k,) float32 and ``rows_k``
(M_k,) int64, the row of each id (in any order: the graph sums them); a row no id names pools to zeros::

    ids_k [7, 3, 9, 4, 8, 2]   weights_k [.5, .5, 1, .33, .33, .33]   rows_k [0, 0, 1, 3, 3, 3]   (row 2: no ids)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shoal.data.batch import Batch

__all__ = ["InputLayout", "padded_feed"]


@dataclass(frozen=True)
class InputLayout:
    """Which sparse inputs are one id per row (packed in ``single_ids``) and which are lists (padded, or flat
    for the positions in ``flat``: see the module docstring)."""

    dense_dim: int
    singles: tuple[int, ...]  # input positions, in ``single_ids`` column order
    lists: tuple[int, ...]
    names: tuple[str, ...] = ()  # feature name of each input position, for messages and docs
    flat: tuple[int, ...] = ()  # the lists taken flat (ids_k, weights_k, rows_k), each also in ``lists``

    @property
    def num_inputs(self) -> int:
        return len(self.singles) + len(self.lists)

    @property
    def input_names(self) -> list[str]:
        names = ["dense"] + (["single_ids"] if self.singles else [])
        for k in self.lists:
            names += [f"ids_{k}", f"weights_{k}"] + ([f"rows_{k}"] if k in self.flat else [])
        return names

    def name(self, k: int) -> str:
        return self.names[k] if k < len(self.names) else f"input {k}"

    def to_dict(self) -> dict[str, Any]:
        flat = {"flat": list(self.flat)} if self.flat else {}  # padded exports keep their metadata as it was
        return {"dense_dim": self.dense_dim, "singles": list(self.singles), "lists": list(self.lists),
                "names": list(self.names), **flat, "input_names": self.input_names}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> InputLayout:
        return InputLayout(int(d["dense_dim"]), tuple(d["singles"]), tuple(d["lists"]), tuple(d.get("names", ())),
                           tuple(d.get("flat", ())))



def padded_feed(batch: Batch, layout: InputLayout) -> dict[str, np.ndarray]:
    """The ONNX inputs of ``batch`` (see the module docstring), vectorized: no Python loop over rows."""
    rows = len(batch)
    if len(batch.ids) != layout.num_inputs:
        raise ValueError(f"the batch has {len(batch.ids)} sparse inputs, the export expects {layout.num_inputs}; "
                         "was it encoded by this bundle's encoder?")
    feed = {"dense": np.ascontiguousarray(batch.dense, dtype=np.float32)}
    if layout.singles:
        checked: set[int] = set()  # one-id features share one offsets array: check each array once
        for k in layout.singles:
            off = batch.offsets[k]
            if len(batch.ids[k]) != rows or (id(off) not in checked
                                             and (len(off) != rows + 1 or not _one_each(off, rows))):
                raise ValueError(f"{layout.name(k)} must hold exactly one id per row (it has no separator), but "
                                 f"{rows} rows hold {len(batch.ids[k])} ids; encode the rows with the bundle's "
                                 "encoder")
            checked.add(id(off))
        # (S * B,) feature-major -> (B, S): one concatenate + transpose, cheaper than np.stack(axis=1) on one row
        stacked = np.concatenate([batch.ids[k] for k in layout.singles]).astype(np.int64, copy=False)
        feed["single_ids"] = np.ascontiguousarray(stacked.reshape(len(layout.singles), rows).T)
    for k in layout.lists:
        if k in layout.flat:
            feed[f"ids_{k}"], feed[f"weights_{k}"], feed[f"rows_{k}"] = _flat(batch.ids[k], batch.offsets[k], rows)
        else:
            feed[f"ids_{k}"], feed[f"weights_{k}"] = _pad(batch.ids[k], batch.offsets[k], rows)
    return feed


def _one_each(offsets: np.ndarray, rows: int) -> bool:
    """Whether jagged ``offsets`` (rows + 1,) give every row exactly one id (a scalar test for one row)."""
    if rows == 1:
        return int(offsets[1]) - int(offsets[0]) == 1
    return bool((np.diff(offsets) == 1).all())


def _pad(ids: np.ndarray, offsets: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Jagged ids (N,) + offsets (B + 1,) -> padded ids (B, L) with 0 after each row's end, and weights (B, L)."""
    n = int(offsets[-1] - offsets[0])
    flat = ids[offsets[0]: offsets[-1]].astype(np.int64, copy=False)
    if rows == 1:  # one row (serving, latency at batch 1): its ids as they are, no scatter
        if n == 0:
            return np.zeros((1, 1), np.int64), np.zeros((1, 1), np.float32)
        return flat.reshape(1, n), np.full((1, n), np.float32(1.0 / n))
    lengths = np.diff(offsets)  # (B,)
    if n == rows and (lengths == 1).all():  # one id per row: nothing to pad
        return flat.reshape(rows, 1), np.ones((rows, 1), np.float32)
    width = max(int(lengths.max(initial=0)), 1)
    r = np.repeat(np.arange(rows), lengths)  # (N,) row of each id
    c = np.arange(n) - np.repeat(offsets[:-1] - offsets[0], lengths)  # (N,) position within its row
    padded = np.zeros((rows, width), np.int64)
    padded[r, c] = flat
    weights = np.zeros((rows, width), np.float32)
    # 1/len in float32, as SparseArch computes it (1.0 / lengths.float()): both are the correctly rounded quotient
    weights[r, c] = np.repeat((1.0 / np.maximum(lengths, 1)).astype(np.float32), lengths)
    return padded, weights


def _flat(ids: np.ndarray, offsets: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jagged ids (N,) + offsets (B + 1,) -> the flat form: ids (N,), weights 1/len (N,), row of each id (N,).
    A row without ids has no entry: it pools to zeros, as an empty bag does."""
    flat = ids[offsets[0]: offsets[-1]].astype(np.int64, copy=False)
    lengths = np.diff(offsets)[:rows]  # (B,)
    weights = np.repeat((1.0 / np.maximum(lengths, 1)).astype(np.float32), lengths)
    return flat, weights, np.repeat(np.arange(rows, dtype=np.int64), lengths)
