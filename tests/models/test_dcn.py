"""DCN-v2's cross layer on hand-computed examples, and its two structures."""

from __future__ import annotations

import pytest
import torch

from shoal.config import ConfigError, parse_config
from shoal.models import build
from shoal.models.dcn import CrossLayer, CrossNet


def _set(linear: torch.nn.Linear, weight: list[list[float]], bias: list[float] | None = None) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        if bias is not None:
            linear.bias.copy_(torch.tensor(bias))


def test_cross_layers_by_hand() -> None:
    """x0 = x = [1, 2], W = [[1, 2], [3, 4]], b = [0.5, -1]:
    layer 1: Wx + b = [5.5, 10]; x0 * that = [5.5, 20]; + x -> [6.5, 22]
    layer 2: W[6.5, 22] + b = [51, 106.5]; x0 * that = [51, 213]; + [6.5, 22] -> [57.5, 235]"""
    net = CrossNet(2, layers=2)
    for layer in net.layers:
        assert isinstance(layer.linear, torch.nn.Linear)
        _set(layer.linear, [[1.0, 2.0], [3.0, 4.0]], [0.5, -1.0])
    x0 = torch.tensor([[1.0, 2.0]])
    with torch.no_grad():
        torch.testing.assert_close(net.layers[0](x0, x0), torch.tensor([[6.5, 22.0]]))
        torch.testing.assert_close(net(x0), torch.tensor([[57.5, 235.0]]))


def test_low_rank_cross_layer_by_hand() -> None:
    """W = U V^T with V^T = [[1, 1]], U = [[2], [3]], b = [0, 1]; x0 = x = [1, 2]:
    V^T x = 3; U(3) + b = [6, 10]; x0 * that = [6, 20]; + x -> [7, 22]"""
    layer = CrossLayer(2, rank=1)
    assert isinstance(layer.linear, torch.nn.Sequential)
    v_t, u = layer.linear[0], layer.linear[1]  # V^T: (1, 2); U: (2, 1)
    assert isinstance(v_t, torch.nn.Linear) and isinstance(u, torch.nn.Linear)
    _set(v_t, [[1.0, 1.0]])
    _set(u, [[2.0], [3.0]], [0.0, 1.0])
    x0 = torch.tensor([[1.0, 2.0]])
    with torch.no_grad():
        torch.testing.assert_close(layer(x0, x0), torch.tensor([[7.0, 22.0]]))
        full = CrossLayer(2)
        assert isinstance(full.linear, torch.nn.Linear)
        _set(full.linear, (u.weight @ v_t.weight).tolist(), [0.0, 1.0])  # the same W, full rank
        torch.testing.assert_close(full(x0, x0), layer(x0, x0))


def _config(**model: object):  # noqa: ANN202
    return parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"},
                         "features": [{"name": "a", "kind": "dense"}, {"name": "u", "kind": "sparse", "buckets": 9}],
                         "model": {"name": "dcn_v2", "embedding_dim": 3, **model}})


@pytest.mark.parametrize("structure", ["stacked", "parallel"])
@pytest.mark.parametrize("hidden", [[], [5, 4]])
def test_structures_give_one_logit_per_row(structure: str, hidden: list[int]) -> None:
    cfg = _config(structure=structure, hidden=hidden)
    model = build(cfg.model, dense_dim=1, buckets=[9], outputs=1)
    ids, offsets = [torch.tensor([1, 2, 0, 8])], [torch.arange(4)]
    out = model(torch.randn(4, 1), ids, offsets)  # x0: (4, 1 + 3)
    assert out.shape == (4,)
    width = 4 + (hidden[-1] if hidden else 4) if structure == "parallel" else (hidden[-1] if hidden else 4)
    assert isinstance(model.head, torch.nn.Linear) and model.head.in_features == width


def test_defaults_and_bad_structure() -> None:
    cfg = _config().model
    assert (cfg.cross_layers, cfg.low_rank, cfg.hidden, cfg.structure) == (3, None, [256, 128], "stacked")
    with pytest.raises(ConfigError, match=r"model\.dcn_v2\.structure: Input should be 'stacked' or 'parallel'"):
        _config(structure="sideways")
