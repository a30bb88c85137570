"""The exported graph: the model traced to ONNX over the padded form of its sparse inputs.

``nn.EmbeddingBag`` exports as an ONNX ``Loop``, so the graph takes each sparse input padded
(:mod:`shoal.runtime.feed` describes the form and builds it from a batch) and computes
``sum_l W[ids + start] * weights`` = the mean embedding of each row's ids, which is exactly what
:class:`~shoal.models.embeddings.SparseArch` computes (mode ``sum``, per-sample weights ``1/len``), as Gather +
Mul + ReduceSum. A row with no ids pools to zeros, as an empty bag does. The batch axis and every list length are
dynamic; the output is ``logits``: (B,) binary or (B, C) multiclass.
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

__all__ = ["PaddedSparseArch", "layout_for", "trace_to_onnx"]


def layout_for(encoder: Any, model: nn.Module | None = None) -> InputLayout:
    """The layout of an encoder's inputs: sparse features without a separator, dense bins and time parts hold one
    id per row; lists (separator) and text hold several. Inputs the encoder does not describe are taken as lists."""
    buckets = list(encoder.buckets)
    parts = [f"{f.name}:{p}" for f in getattr(encoder, "time_features", []) for p in f.parts]  # one id per row
    single: list[bool] = ([f.separator is None for f in encoder.sparse_features] + [False] * len(encoder.text_features)
                          + [True] * len(encoder.binned_features) + [True] * len(parts))
    names = ([f.name for f in encoder.sparse_features] + [f.name for f in encoder.text_features]
             + [f"{f.name}:bin" for f in encoder.binned_features] + parts)
    if len(single) != len(buckets):  # an encoder this module does not know: lists are always correct
        single, names = [False] * len(buckets), [f"input {k}" for k in range(len(buckets))]
    return InputLayout(int(encoder.dense_dim), tuple(k for k, s in enumerate(single) if s),
                       tuple(k for k, s in enumerate(single) if not s), tuple(names))


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
    ids: torch.Tensor | None = None  # (B, L) padded ids of a list input
    weights: torch.Tensor | None = None  # (B, L)

    def padded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (B, L), weights (B, L)) of this input, whatever its kind."""
        if self.group is not None:
            ids = self.group[:, self.col: self.col + 1]  # (B, 1)
            return ids, torch.ones_like(ids, dtype=torch.float32)
        assert self.ids is not None and self.weights is not None
        return self.ids, self.weights


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
            slots[k] = _Slot(k, ids=padded[pos], weights=padded[pos + 1])
            pos += 2
        return self.model(dense, slots, slots)


def _example(layout: InputLayout, buckets: list[int], rows: int = 3) -> list[torch.Tensor]:
    """A small input to trace with: lists of 2 ids, so no length-1 axis gets specialized away."""
    feed = [torch.zeros(rows, layout.dense_dim)]
    if layout.singles:
        feed.append(torch.stack([torch.arange(rows) % buckets[k] for k in layout.singles], dim=1))
    for k in layout.lists:
        feed += [torch.arange(rows * 2).reshape(rows, 2) % buckets[k], torch.full((rows, 2), 0.5)]
    return feed


def trace_to_onnx(model: nn.Module, layout: InputLayout, path: Path, buckets: list[int], opset: int = 17) -> None:
    """Write ``model`` over the padded inputs as ONNX, with a dynamic batch axis and dynamic list lengths.

    Uses the TorchScript exporter (``dynamo=False``): the graph is static apart from its shapes, it exports in
    about a second, and it keeps the parameter names.
    """
    wrapper = ExportModule(model, layout).eval()
    axes: dict[str, dict[int, str]] = {"dense": {0: "batch"}, "logits": {0: "batch"}, "single_ids": {0: "batch"}}
    for k in layout.lists:
        axes[f"ids_{k}"] = axes[f"weights_{k}"] = {0: "batch", 1: f"length_{k}"}
    names = layout.input_names
    with torch.no_grad(), _patched_padders(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; parity is checked on the result
        torch.onnx.export(wrapper, tuple(_example(layout, buckets)), str(path), input_names=names,
                          output_names=["logits"], dynamic_axes={n: axes[n] for n in [*names, "logits"]},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
