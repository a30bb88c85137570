"""The exported graph: the model traced to ONNX over the padded or flat form of its sparse inputs.

``nn.EmbeddingBag`` exports as an ONNX ``Loop``, so the graph takes each list input in one of two forms
(:mod:`shoal.runtime.feed` describes both and builds them from a batch) and computes
``sum_i W[ids_i + start] * weights_i`` over each row's ids = the mean embedding of the row, which is exactly what
:class:`~shoal.models.embeddings.SparseArch` computes (mode ``sum``, per-sample weights ``1/len``):

- padded (the encoded export, ``model.onnx``): ids and weights (B, L), as Gather + Mul + ReduceSum over L;
- flat (the raw export's bags, the layout's ``flat``): ids, weights and rows (M,), as Gather + Mul + a segment sum
  (``ScatterND`` with ``reduction="add"`` into (B, d) zeros, B the dense input's rows), so a batch pays for the
  ids it has, not for B times its longest bag.

A row with no ids pools to zeros, as an empty bag does. The batch axis and every list length are dynamic; the
output is ``logits``: (B,) binary or (B, C) multiclass.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shoal.models.embeddings import SparseArch
from shoal.runtime.feed import InputLayout

__all__ = ["PaddedSparseArch", "SegmentSum", "layout_for", "trace_to_onnx"]


def layout_for(encoder: Any, model: nn.Module | None = None, flat: bool = False) -> InputLayout:
    """The layout of an encoder's inputs: sparse features without a separator, dense bins and time parts hold one
    id per row; lists (separator) and text hold several. Inputs the encoder does not describe are taken as lists.

    ``flat``: take the bags flat (the raw export), all lists but the byte sequences (``tokens: bytes``), which a
    sequence model reads padded; the lists of an encoder this module does not know stay padded."""
    buckets = list(encoder.buckets)
    parts = [f"{f.name}:{p}" for f in getattr(encoder, "time_features", []) for p in f.parts]  # one id per row
    single: list[bool] = ([f.separator is None for f in encoder.sparse_features] + [False] * len(encoder.text_features)
                          + [True] * len(encoder.binned_features) + [True] * len(parts))
    names = ([f.name for f in encoder.sparse_features] + [f.name for f in encoder.text_features]
             + [f"{f.name}:bin" for f in encoder.binned_features] + parts)
    known = len(single) == len(buckets)
    if not known:  # an encoder this module does not know: lists are always correct
        single, names = [False] * len(buckets), [f"input {k}" for k in range(len(buckets))]
    lists = tuple(k for k, s in enumerate(single) if not s)
    sequences = set(getattr(encoder, "sequence_slots", []))
    bags = tuple(k for k in lists if k not in sequences) if flat and known else ()
    return InputLayout(int(encoder.dense_dim), tuple(k for k, s in enumerate(single) if s), lists, tuple(names), bags)


# -- export-time modules ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Slot:
    """One sparse input as the export wrapper hands it to the model, in place of its (ids, offsets) tensors.

    The model passes slots on to its :class:`SparseArch` (replaced by :class:`PaddedSparseArch`), which reads
    the padded tensors from them; a model that does arithmetic on the raw ids cannot be exported this way.
    """

    position: int
    group: torch.Tensor | None = None  # single_ids (B, S), with column ``col``
    col: int = 0
    ids: torch.Tensor | None = None  # (B, L) padded ids of a list input, or (M,) flat ids with ``rows``
    weights: torch.Tensor | None = None  # (B, L), or (M,)
    rows: torch.Tensor | None = None  # (M,) the row of each flat id; None: the input is padded
    batch: torch.Tensor | None = None  # any (B, ...) tensor (the dense input): B, the rows a flat input pools to

    def padded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (B, L), weights (B, L)) of this input, one id per row or padded list."""
        if self.group is not None:
            ids = self.group[:, self.col: self.col + 1]  # (B, 1)
            return ids, torch.ones_like(ids, dtype=torch.float32)
        assert self.ids is not None and self.weights is not None and self.rows is None, "a flat input is not padded"
        return self.ids, self.weights


class SegmentSum(torch.autograd.Function):
    """``out[b] = sum of values[i] with rows[i] == b``: (M, d) values + (M,) rows -> (B, d), B = ``like.shape[0]``;
    a row no value names stays 0.

    Exported as one ``ScatterND`` with ``reduction="add"`` (opset 16) into zeros. The exporter's own forms of
    ``index_add`` / ``index_put(accumulate=True)`` scatter without a reduction (wrong for repeated rows) and
    ``scatter_add`` needs an (M, d) index, which ONNX Runtime's ``ScatterElements`` walks element by element."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.new_zeros(like.shape[0], values.shape[1]).index_add_(0, rows, values)  # (B, d)

    @staticmethod
    def symbolic(g: Any, values: Any, rows: Any, like: Any) -> Any:
        shape = g.op("Concat", g.op("Shape", like, end_i=1), g.op("Shape", values, start_i=1), axis_i=0)  # [B, d]
        zeros = g.op("ConstantOfShape", shape, value_t=torch.zeros(1, dtype=torch.float32))
        index = g.op("Unsqueeze", rows, g.op("Constant", value_t=torch.tensor([1])))  # (M, 1)
        return g.op("ScatterND", zeros, index, values, reduction_s="add")


class PaddedSparseArch(nn.Module):
    """:class:`SparseArch`'s mean pooling over padded inputs: Gather + Mul + ReduceSum, no EmbeddingBag.

    Shares the trained weight (the concatenated tables) and the table offsets of the module it replaces.
    """

    def __init__(self, arch: SparseArch) -> None:
        super().__init__()
        self.weight = arch.bag.weight  # (sum of buckets, dim)
        self.starts = [int(s) for s in arch.table_offsets[:-1]]
        self.dim = arch.dim
        self.num_features = arch.num_features

    def forward(self, ids: list[_Slot], offsets: list[_Slot]) -> torch.Tensor:
        if not ids:
            return torch.zeros(0, 0, self.dim)
        singles = [(i, s) for i, s in enumerate(ids) if s.group is not None]
        lists = [(i, s) for i, s in enumerate(ids) if s.group is None]
        pieces = []
        if singles:
            group = singles[0][1].group
            assert group is not None and all(s.group is group for _, s in singles)
            cols = [s.col for _, s in singles]
            picked = group if cols == list(range(group.shape[1])) else group[:, cols]  # (B, S)
            rows = picked + torch.tensor([self.starts[i] for i, _ in singles])  # (B, S) rows of the big table
            pieces.append(F.embedding(rows, self.weight))  # (B, S, d)
        for i, s in lists:
            if s.rows is not None:  # flat: (M,) ids, weights and rows
                assert s.ids is not None and s.weights is not None and s.batch is not None
                emb = F.embedding(s.ids + self.starts[i], self.weight)  # (M, d)
                pooled = SegmentSum.apply(emb * s.weights.unsqueeze(-1), s.rows, s.batch)  # (B, d): the weighted mean
                pieces.append(pooled.unsqueeze(1))  # (B, 1, d)
                continue
            padded, weights = s.padded()
            emb = F.embedding(padded + self.starts[i], self.weight)  # (B, L, d)
            pieces.append((emb * weights.unsqueeze(-1)).sum(dim=1, keepdim=True))  # (B, 1, d): the weighted mean
        out = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]  # (B, F, d): singles first, then lists
        order = [i for i, _ in singles] + [i for i, _ in lists]
        if order != sorted(order):
            out = out[:, [order.index(i) for i in range(len(order))]]  # back to the caller's input order
        return out


def _padded_sequences(ids: _Slot, offsets: _Slot, min_length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Export-time stand-in for :func:`shoal.models.bytecnn.pad_sequences`: the input is already padded."""
    padded, weights = ids.padded()
    lengths = (weights > 0).sum(dim=1)  # (B,)
    if min_length > 1:  # at least min_length columns; a longer zero tail does not change a sequence model's output
        padded = F.pad(padded, (0, min_length - 1))
    return padded, lengths


# module attributes swapped while tracing: sequence models pad their inputs themselves
_SEQUENCE_PADDERS = (("shoal.models.bytecnn", "pad_sequences"),)


@contextlib.contextmanager
def _patched_padders() -> Iterator[None]:
    saved = []
    for module_name, attr in _SEQUENCE_PADDERS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, attr):
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, _padded_sequences)
    try:
        yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)


class ExportModule(nn.Module):
    """A trained model over the padded inputs: ``forward(dense, *padded) -> logits`` (inputs as named by
    :attr:`InputLayout.input_names`). Every :class:`SparseArch` of a copy of the model is replaced by a
    :class:`PaddedSparseArch` sharing its weights; the original model is not modified."""

    def __init__(self, model: nn.Module, layout: InputLayout) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        for name, module in list(self.model.named_modules()):
            if isinstance(module, SparseArch):
                parent_name, _, attr = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, attr, PaddedSparseArch(module))
        self.layout = layout

    def forward(self, dense: torch.Tensor, *padded: torch.Tensor) -> torch.Tensor:
        slots: list[_Slot | None] = [None] * self.layout.num_inputs
        pos = 0
        if self.layout.singles:
            for j, k in enumerate(self.layout.singles):
                slots[k] = _Slot(k, group=padded[0], col=j)
            pos = 1
        for k in self.layout.lists:
            if k in self.layout.flat:
                slots[k] = _Slot(k, ids=padded[pos], weights=padded[pos + 1], rows=padded[pos + 2], batch=dense)
                pos += 3
            else:
                slots[k] = _Slot(k, ids=padded[pos], weights=padded[pos + 1])
                pos += 2
        return self.model(dense, slots, slots)


def _example(layout: InputLayout, buckets: list[int], rows: int = 3) -> list[torch.Tensor]:
    """A small input to trace with: lists of 2 ids, so no length-1 axis gets specialized away."""
    feed = [torch.zeros(rows, layout.dense_dim)]
    if layout.singles:
        feed.append(torch.stack([torch.arange(rows) % buckets[k] for k in layout.singles], dim=1))
    for k in layout.lists:
        if k in layout.flat:  # (2 * rows,) ids, weights and rows: two ids a row
            feed += [torch.arange(rows * 2) % buckets[k], torch.full((rows * 2,), 0.5),
                     torch.arange(rows).repeat_interleave(2)]
        else:
            feed += [torch.arange(rows * 2).reshape(rows, 2) % buckets[k], torch.full((rows, 2), 0.5)]
    return feed


def trace_to_onnx(model: nn.Module, layout: InputLayout, path: Path, buckets: list[int], opset: int = 17) -> None:
    """Write ``model`` over the padded (and the layout's flat) inputs as ONNX, with a dynamic batch axis and
    dynamic list lengths.

    Uses the TorchScript exporter (``dynamo=False``): the graph is static apart from its shapes, it exports in
    about a second, and it keeps the parameter names.
    """
    wrapper = ExportModule(model, layout).eval()
    axes: dict[str, dict[int, str]] = {"dense": {0: "batch"}, "logits": {0: "batch"}, "single_ids": {0: "batch"}}
    for k in layout.lists:
        axes[f"ids_{k}"] = axes[f"weights_{k}"] = {0: "batch", 1: f"length_{k}"}
        if k in layout.flat:
            axes[f"ids_{k}"] = axes[f"weights_{k}"] = axes[f"rows_{k}"] = {0: f"ids_{k}.count"}
    names = layout.input_names
    with torch.no_grad(), _patched_padders(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; parity is checked on the result
        torch.onnx.export(wrapper, tuple(_example(layout, buckets)), str(path), input_names=names,
                          output_names=["logits"], dynamic_axes={n: axes[n] for n in [*names, "logits"]},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
