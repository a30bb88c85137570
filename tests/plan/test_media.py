"""The image and audio encoders in the plan: their convolutions counted by hand, priced at the conv rates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from shoal.config import RunConfig, parse_config
from shoal.plan.cluster import load_cluster
from shoal.plan.cost import conv2d_flops, model_cost
from shoal.plan.inputs import input_shape
from shoal.plan.rates import rates_for


def media_config(feature: dict[str, Any]) -> RunConfig:
    return parse_config({"name": "t", "data": {"train": "/nonexistent/train.csv"},
                         "label": {"column": "y", "kind": "multiclass", "classes": ["a", "b"]},
                         "features": [feature], "model": {"name": "mlp", "hidden": [8]}})


def test_conv2d_flops_are_exact() -> None:
    assert conv2d_flops(3, 16, (3, 3), (28, 28)) == (2 * 3 * 9 * 16 + 16) * 28 * 28
    assert conv2d_flops(16, 32, (1, 1), (7, 7), bias=False) == 2 * 16 * 32 * 49


def test_a_tiny_resnet_counts_its_convolutions_by_hand() -> None:
    cfg = media_config({"name": "img", "column": "path", "kind": "image", "channels": 1, "size": [8, 8],
                        "widths": [4, 8], "blocks": 1})
    cost = model_cost(cfg, input_shape(cfg, 16))
    convs = {la.name.removeprefix("encoders.0.resnet."): la for la in cost.layers if la.kind == "conv"}
    # stem 1 -> 4 on 8 x 8; block 4 -> 4 on 8 x 8; block 4 -> 8, stride 2, on 4 x 4 with a 1 x 1 projection
    hand = {"stem.0": 2 * 1 * 9 * 4 * 64, "stages.0.conv1": 2 * 4 * 9 * 4 * 64, "stages.0.conv2": 2 * 4 * 9 * 4 * 64,
            "stages.1.conv1": 2 * 4 * 9 * 8 * 16, "stages.1.conv2": 2 * 8 * 9 * 8 * 16,
            "stages.1.shortcut.0": 2 * 4 * 8 * 16}
    assert {k: la.fwd_flops for k, la in convs.items()} == hand
    assert convs["stem.0"].bwd_flops == hand["stem.0"]  # it reads the image: no input gradient
    assert convs["stages.0.conv1"].bwd_flops == 2 * hand["stages.0.conv1"]
    assert convs["stages.1.conv2"].width == 8  # its GEMM: (B Ho Wo) x 72 by 72 x 8
    assert convs["stem.0"].width == 4  # the stem's: 9 x 4
    kinds = {la.kind for la in cost.layers}
    assert kinds == {"conv", "elementwise", "linear"}  # batch norms, ReLUs, the residual sums; the MLP head
    assert cost.dense_params == sum(la.params for la in cost.layers)


def test_the_audio_cnn_is_counted_and_its_front_end_noted() -> None:
    cfg = media_config({"name": "sound", "column": "path", "kind": "audio", "sample_rate": 8000, "seconds": 0.5,
                        "n_mels": 16, "widths": [4, 8], "blocks": 1})
    shape = input_shape(cfg, 16)
    cost = model_cost(cfg, shape)
    convs = [la for la in cost.layers if la.kind == "conv"]
    (m,) = shape.media
    _, mels, frames = m.shape
    assert convs[0].fwd_flops == conv2d_flops(1, 4, (3, 3), (mels, frames), bias=False)
    assert convs[0].bwd_flops == 2 * convs[0].fwd_flops  # behind a batch norm: its input needs a gradient
    assert convs[1].fwd_flops == conv2d_flops(4, 8, (3, 3), (-(-mels // 2), -(-frames // 2)), bias=False)
    assert any("log-mel" in n for n in shape.notes)


def test_convolutions_use_their_own_rates_when_calibrated() -> None:
    rates = rates_for(load_cluster(Path(__file__).resolve().parents[2] / "configs" / "clusters" / "1xa100.yaml"), 1)
    assert rates.conv_s(1e9, 16) == rates.matmul_s(1e9, 16)  # no conv rates: the matmul ones
    conv = replace(rates, conv_points=((16, 4e10), (64, 8e10)))
    assert conv.conv_s(4e10, 16) == 1.0
    assert conv.conv_s(8e10, 64) == 1.0
