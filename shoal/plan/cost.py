"""FLOPs, bytes and parameters of every layer of a model, per row, from its real shapes.

The model is built from the config (:func:`shoal.models.build`) with its tables cut to a few rows (FLOPs do not
depend on a table's rows, and a 10M-row table need not be allocated), and run once on a small made-up batch of
the right shape; forward hooks read each layer's input and output shapes. Counting rules (a multiply-add is 2
FLOPs, as in the MLPerf and DeepSpeed counts)::

    Linear(i, o)              forward 2 i o + o (bias)        backward 2 x forward (input and weight gradients)
    Conv1d(c, o, k) -> L      forward 2 c k o L + o L         backward 2 x forward
    Conv2d(c, o, kh x kw)     forward 2 c kh kw o Ho Wo       backward 2 x forward
      -> (Ho, Wo)               (+ o Ho Wo with a bias)
    DotInteraction (F, d)     forward 2 F F d (one bmm)       backward 2 x forward
    (a Linear or conv whose input needs no gradient: data, the dense values or an image)  backward 1 x forward
    EmbeddingBag, n ids of d  forward 2 n d (weighted sum)    backward: the ids' gradients summed per row, then
                                                              row-wise Adagrad on the distinct rows (bytes, below)

A convolution runs on a CPU as a GEMM of (B Ho Wo) x (c kh kw / groups) by (c kh kw / groups) x o (im2col, or
oneDNN's direct kernels of the same arithmetic), so its ``width`` (the rate it is priced at) is that GEMM's
smaller inner dimension, ``min(c kh kw / groups, o)``, as a Linear's is ``min(i, o)``. Batch normalisation,
pooling, activations, a residual block's functional ReLUs and sum, and the media encoders' training-time
augmentation are elementwise: bytes, not FLOPs (``act_bytes``, the output read and written; pooling's input).

Embedding bytes per row (float32): forward ``n d 4`` read; backward ``n d 4`` (gradient sums) and, per distinct
row touched, the row read and written and its accumulator: ``u (2 d 4 + 2 x 4)``.

The same twin, trained for a step, gives the ops a step dispatches (:mod:`shoal.plan.ops`), with the tables'
optimizer fused into the backward (one CPU process) and not (a distributed rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from shoal.config import RunConfig
from shoal.models import build
from shoal.models.embeddings import SparseArch
from shoal.plan.inputs import InputShape
from shoal.plan.ops import step_ops

__all__ = ["LayerCost", "ModelCost", "TableCost", "conv1d_flops", "conv2d_flops", "cross_flops",
           "interaction_flops", "linear_flops", "model_cost"]

TRACE_ROWS = 16
TWIN_ROWS = 64  # table rows of the twin the shapes are traced on


def linear_flops(fan_in: int, fan_out: int, bias: bool = True) -> int:
    """Forward FLOPs of one row through ``nn.Linear(fan_in, fan_out)``."""
    return 2 * fan_in * fan_out + (fan_out if bias else 0)


def conv1d_flops(channels_in: int, channels_out: int, kernel: int, length_out: int, bias: bool = True,
                 groups: int = 1) -> int:
    """Forward FLOPs of one row through ``nn.Conv1d`` with an output of ``length_out`` positions."""
    return (2 * channels_in // groups * kernel * channels_out + (channels_out if bias else 0)) * length_out


def conv2d_flops(channels_in: int, channels_out: int, kernel: tuple[int, int], out: tuple[int, int],
                 bias: bool = True, groups: int = 1) -> int:
    """Forward FLOPs of one row through ``nn.Conv2d`` with an output of ``out`` = (Ho, Wo) positions."""
    kh, kw = kernel
    return (2 * channels_in // groups * kh * kw * channels_out + (channels_out if bias else 0)) * out[0] * out[1]


def interaction_flops(vectors: int, dim: int) -> int:
    """Forward FLOPs of one row's pairwise dot products of ``vectors`` vectors of ``dim`` (one (F, d) x (d, F))."""
    return 2 * vectors * vectors * dim


def cross_flops(width: int, rank: int | None = None) -> int:
    """Forward FLOPs of one row through a DCN-v2 cross layer ``x0 * (W x + b) + x`` (Wang et al. 2021), with
    ``W`` full (width x width) or low-rank ``U V`` (width x rank, rank x width)."""
    matmul = linear_flops(width, width) if rank is None else 2 * width * rank + linear_flops(rank, width)
    return matmul + 2 * width  # the elementwise product with x0 and the residual


@dataclass(frozen=True)
class LayerCost:
    """One layer's cost per row of a batch. ``width``: the matmul's smallest dimension (small matmuls reach a
    smaller fraction of peak); ``act_bytes``: the output, kept for the backward (float32)."""

    name: str
    kind: str  # linear | conv | interaction | elementwise
    params: int
    fwd_flops: float
    bwd_flops: float
    act_bytes: float
    width: int = 0


@dataclass(frozen=True)
class TableCost:
    """One embedding table: ``rows`` x ``dim``, looked up ``lookups`` times per row; a batch touches ``unique``
    distinct rows per batch row. ``arch``: the SparseArch that holds it (its tables share one weight);
    ``feature``: the input it looks up (-1: unknown, e.g. a table described without a model)."""

    name: str
    rows: int
    dim: int
    lookups: float
    unique: float
    arch: str = ""
    feature: int = -1

    @property
    def bytes(self) -> int:
        return self.rows * self.dim * 4

    @property
    def fwd_bytes(self) -> float:
        return self.lookups * self.dim * 4

    @property
    def bwd_bytes(self) -> float:
        return self.lookups * self.dim * 4 + self.unique * (2 * self.dim * 4 + 8)


@dataclass
class ModelCost:
    """Every layer and table of a model, per row. ``dense_params`` are trained by Adam (replicated, all-reduced);
    the tables by row-wise Adagrad (one float32 accumulator per row)."""

    name: str
    layers: list[LayerCost]
    tables: list[TableCost]
    features: int  # embedding inputs (each costs a few ops per step)
    notes: list[str] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)  # ops of a training step: "fused" / "unfused" tables' step
    dense_tensors: list[int] = field(default_factory=list)  # sizes of the tensors Adam steps (its cost is per tensor)
    interactions: dict[str, tuple[int, int]] = field(default_factory=dict)  # a dot interaction layer -> (F, d)

    @property
    def dense_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def table_params(self) -> int:
        return sum(t.rows * t.dim for t in self.tables)

    @property
    def fwd_flops(self) -> float:
        return sum(layer.fwd_flops for layer in self.layers) + sum(2 * t.lookups * t.dim for t in self.tables)

    @property
    def bwd_flops(self) -> float:
        return sum(layer.bwd_flops for layer in self.layers)

    @property
    def act_bytes(self) -> float:
        return sum(layer.act_bytes for layer in self.layers)

    @property
    def matmul_layers(self) -> int:
        return sum(1 for layer in self.layers if layer.kind in ("linear", "conv", "interaction"))


def _fake_batch(shape: InputShape, rows: int) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """``rows`` made-up rows of ``shape``: ids in the twin's table, lengths averaging ``ids_per_row``."""
    gen = torch.Generator().manual_seed(0)
    dense = torch.randn(rows, shape.dense_dim, generator=gen)
    ids, offsets = [], []
    for k, per_row in enumerate(shape.ids_per_row):
        mean = shape.seq_len if k in shape.sequences else per_row
        total = max(round(mean * rows), rows)  # every row holds at least one id
        lengths = torch.full((rows,), total // rows, dtype=torch.int64)
        lengths[: total % rows] += 1
        high = min(shape.buckets[k], TWIN_ROWS) if k not in shape.sequences else shape.buckets[k]
        ids.append(torch.randint(1, max(high, 2), (int(lengths.sum()),), generator=gen))
        offsets.append(torch.cumsum(lengths, 0) - lengths)
    return dense, ids, offsets


def model_cost(config: RunConfig, shape: InputShape) -> ModelCost:
    """The cost of ``config``'s model on inputs of ``shape`` (see the module docstring)."""
    twin_buckets = [b if k in shape.sequences else min(b, TWIN_ROWS) for k, b in enumerate(shape.buckets)]
    twin = build(config.model, shape.dense_dim, twin_buckets, shape.outputs, shape.sequences,
                 media=shape.media).eval()
    dense, ids, offsets = _fake_batch(shape, TRACE_ROWS)
    which = {id(t): k for k, t in enumerate(ids)}  # an ids tensor -> its input, to find a table's real size
    layers: list[LayerCost] = []
    tables: list[TableCost] = []
    interactions: dict[str, tuple[int, int]] = {}

    def elementwise(name: str, values: float, params: int = 0) -> None:
        """An elementwise layer of ``values`` floats a row (read and written, forward and backward)."""
        layers.append(LayerCost(name, "elementwise", params, values, values, 4 * values))

    def record(name: str) -> object:
        def hook(module: nn.Module, args: tuple[object, ...], out: object) -> None:
            rows = TRACE_ROWS
            grads = 2 if getattr(args[0], "requires_grad", True) else 1  # the input's gradient and the weight's
            if isinstance(module, nn.Linear):
                calls = out.numel() / module.out_features / rows  # type: ignore[attr-defined]
                f = linear_flops(module.in_features, module.out_features, module.bias is not None) * calls
                layers.append(LayerCost(name, "linear", sum(p.numel() for p in module.parameters()), f, grads * f,
                                        4 * out.numel() / rows, min(module.in_features, module.out_features)))  # type: ignore[attr-defined]
            elif isinstance(module, nn.Conv1d):
                length = out.shape[-1]  # type: ignore[attr-defined]
                f = conv1d_flops(module.in_channels, module.out_channels, module.kernel_size[0], length,
                                 module.bias is not None, module.groups)
                layers.append(LayerCost(name, "conv", sum(p.numel() for p in module.parameters()), f, grads * f,
                                        4 * out.numel() / rows, min(module.in_channels, module.out_channels)))  # type: ignore[attr-defined]
            elif isinstance(module, nn.Conv2d):
                _, _, h, w = out.shape  # type: ignore[attr-defined]  # (B, o, Ho, Wo)
                f = conv2d_flops(module.in_channels, module.out_channels, module.kernel_size,  # type: ignore[arg-type]
                                 (h, w), module.bias is not None, module.groups)
                gemm = min(module.in_channels // module.groups * math.prod(module.kernel_size), module.out_channels)
                layers.append(LayerCost(name, "conv", sum(p.numel() for p in module.parameters()), f,
                                        grads * f, 4 * out.numel() / rows, gemm))  # type: ignore[attr-defined]
            elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                elementwise(name, out.numel() / rows, sum(p.numel() for p in module.parameters()))  # type: ignore[attr-defined]
            elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
                elementwise(name, args[0].numel() / rows)  # type: ignore[attr-defined]  # reads its whole input
            elif type(module).__name__ in ("BasicBlock", "Augment", "SpecAugment", "CrossLayer"):
                # a block's functional ReLUs (2) and residual sum; training-only augmentation: a resampling (its
                # grid's 2 coordinates a value, then the sample), or a shift and 2 masks; a DCN-v2 cross layer's
                # product with x0 and residual sum
                elementwise(name, 3 * out.numel() / rows)  # type: ignore[attr-defined]
            elif type(module).__name__ == "DotInteraction":
                _, vectors, dim = args[0].shape  # type: ignore[attr-defined]  # (B, F, d)
                f = interaction_flops(vectors, dim)
                layers.append(LayerCost(name, "interaction", 0, f, 2 * f, 4 * vectors * vectors, dim))
                interactions[name] = (vectors, dim)
            elif isinstance(module, SparseArch):
                for k_ids in args[0]:  # type: ignore[attr-defined]
                    k = which[id(k_ids)]
                    n = len(k_ids) / rows
                    tables.append(TableCost(f"{name}[{k}]", shape.buckets[k], module.dim, n,
                                            n * shape.unique_fraction[k], name, k))
            elif isinstance(module, nn.Embedding):
                n = args[0].numel() / rows  # type: ignore[attr-defined]  # (B, L) bytes
                layers.append(LayerCost(name, "elementwise", module.weight.numel(), 2 * n * module.embedding_dim,
                                        2 * n * module.embedding_dim, 4 * out.numel() / rows))  # type: ignore[attr-defined]
            elif isinstance(module, nn.ReLU | nn.Dropout):
                layers.append(LayerCost(name, "elementwise", 0, out.numel() / rows, out.numel() / rows,  # type: ignore[attr-defined]
                                        4 * out.numel() / rows))  # type: ignore[attr-defined]
        return hook

    hooked = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding, nn.ReLU, nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d,
              nn.MaxPool2d, nn.AvgPool2d, SparseArch)
    handles = [m.register_forward_hook(record(name)) for name, m in twin.named_modules()
               if isinstance(m, hooked) or type(m).__name__ in ("DotInteraction", "BasicBlock", "Augment",
                                                                 "SpecAugment", "CrossLayer")]
    try:
        with torch.enable_grad():  # an input that needs no gradient (data, an image) shows as such
            twin(dense, ids, offsets)
    finally:
        for h in handles:
            h.remove()
    # unfused first: fusing the twin's tables cannot be undone
    ops = {path: step_ops(twin, (dense, ids, offsets), config.train, path == "fused") for path in ("unfused", "fused")}
    sparse = {id(m.weight) for m in twin.modules() if isinstance(m, nn.EmbeddingBag) and m.sparse}
    dense_tensors = [p.numel() for p in twin.parameters() if id(p) not in sparse]
    return ModelCost(config.model.name, layers, tables, len(tables), list(shape.notes), ops, dense_tensors,
                     interactions)
