"""FLOPs and parameters of known layers and models, counted exactly."""

from __future__ import annotations

from torch import nn

from shoal.config import parse_config
from shoal.models import build
from shoal.plan.cost import conv1d_flops, cross_flops, interaction_flops, linear_flops, model_cost
from shoal.plan.inputs import ASSUMED_TEXT_BYTES, input_shape
from tests.plan.conftest import run_config


def test_layer_flops_are_exact() -> None:
    assert linear_flops(13, 64) == 2 * 13 * 64 + 64
    assert linear_flops(13, 64, bias=False) == 2 * 13 * 64
    assert conv1d_flops(16, 32, 5, 100) == (2 * 16 * 5 * 32 + 32) * 100
    assert interaction_flops(27, 16) == 2 * 27 * 27 * 16
    assert cross_flops(100, rank=10) == 2 * 100 * 10 + linear_flops(10, 100) + 200


def test_dlrm_cost_follows_its_shapes() -> None:
    cfg = run_config({"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16], "top_mlp": [32]}, sparse=3,
                     buckets=1000)
    shape = input_shape(cfg, 64)
    cost = model_cost(cfg, shape)
    linears = {la.name: la for la in cost.layers if la.kind == "linear"}
    # dense width 4 (2 values + 2 missing flags) -> 16 -> 8; interaction of 4 vectors: 6 dots + 8 -> 32 -> 1
    assert linears["bottom_mlp.0"].fwd_flops == linear_flops(4, 16)
    assert linears["bottom_mlp.0"].bwd_flops == linear_flops(4, 16)  # the data needs no gradient
    assert linears["bottom_mlp.2"].fwd_flops == linear_flops(16, 8)
    assert linears["bottom_mlp.2"].bwd_flops == 2 * linear_flops(16, 8)
    assert linears["top_mlp.0"].fwd_flops == linear_flops(8 + 6, 32)
    (inter,) = [la for la in cost.layers if la.kind == "interaction"]
    assert inter.fwd_flops == interaction_flops(4, 8)
    model = build(cfg.model, 4, [1000] * 3)
    dense = sum(p.numel() for n, p in model.named_parameters() if "sparse_arch" not in n)
    assert cost.dense_params == dense
    assert cost.table_params == 3 * 1000 * 8
    assert [(t.rows, t.dim, t.lookups) for t in cost.tables] == [(1000, 8, 1.0)] * 3
    assert sum(cost.dense_tensors) == dense  # the sizes Adam steps, one a tensor
    assert len(cost.dense_tensors) == sum(1 for n, _ in model.named_parameters() if "sparse_arch" not in n)


def test_an_mlp_first_layer_passes_its_gradient_to_the_embeddings() -> None:
    """The MLP's first Linear reads the dense values and the embeddings: its backward computes the input gradient
    (for the tables) as well as the weight's, 2 x its forward; a Linear on data alone only the weight's."""
    cfg = run_config({"name": "mlp", "embedding_dim": 4, "hidden": [16]}, sparse=3, buckets=100)
    cost = model_cost(cfg, input_shape(cfg, 64))
    first = next(la for la in cost.layers if la.kind == "linear")
    assert first.fwd_flops == linear_flops(4 + 3 * 4, 16)
    assert first.bwd_flops == 2 * first.fwd_flops
    dense_only = model_cost(run_config({"name": "mlp", "hidden": [16]}, sparse=0), input_shape(
        run_config({"name": "mlp", "hidden": [16]}, sparse=0), 64))
    first = next(la for la in dense_only.layers if la.kind == "linear")
    assert first.bwd_flops == first.fwd_flops


def test_bytecnn_counts_its_convolutions() -> None:
    cfg = parse_config({"name": "t", "data": {"train": "/nonexistent.parquet"}, "label": {"column": "y"},
                        "features": [{"name": "x", "kind": "text", "tokens": "bytes"}],
                        "model": {"name": "bytecnn", "embedding_dim": 8, "channels": [16, 16], "kernel_size": 3,
                                  "pool": 2, "hidden": [8]}})
    cost = model_cost(cfg, input_shape(cfg, 32))
    convs = [la for la in cost.layers if la.kind == "conv"]
    length = int(ASSUMED_TEXT_BYTES)  # the first block sees every byte, the second half of them (pool 2)
    assert convs[0].fwd_flops == conv1d_flops(8, 16, 3, length)
    assert convs[1].fwd_flops == conv1d_flops(16, 16, 3, length // 2)
    assert convs[0].params == sum(p.numel() for p in nn.Conv1d(8, 16, 3).parameters())


def test_dcn_v2_counts_its_cross_layers() -> None:
    """A full-rank cross layer is a Linear(D, D) and an elementwise product with x0 plus the residual."""
    cfg = run_config({"name": "dcn_v2", "embedding_dim": 4, "cross_layers": 2, "hidden": [8]}, sparse=3,
                     buckets=100)
    cost = model_cost(cfg, input_shape(cfg, 64))
    width = 4 + 3 * 4  # 2 dense values + 2 missing flags, 3 embeddings of 4
    crosses = [la for la in cost.layers if la.name.startswith("cross") and la.kind == "linear"]
    assert [la.fwd_flops for la in crosses] == [linear_flops(width, width)] * 2
    products = [la for la in cost.layers if la.kind == "elementwise" and la.name.startswith("cross")]
    assert len(products) == 2 and all(la.fwd_flops == 3 * width for la in products)
