"""benchmarks/media.py's parts that run anywhere: the plain-PyTorch peer is shoal's network, layer for layer, and
configs/mnist.yaml reads the split the docs name. The benchmark itself needs ../shared/data and minutes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks import media as bench
from shoal.config import load_config
from shoal.data.features.media import MediaInput
from shoal.models import build

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_torch_script_builds_the_network_shoal_trains() -> None:
    cfg = load_config(CONFIGS / "mnist.yaml")
    f = cfg.features[0]
    _, plain = bench._plain_modules()
    script = plain(f.channels, f.widths, f.blocks, cfg.model.hidden[0], 10)
    media = [MediaInput("image", (f.channels, *f.size), tuple(f.widths), f.blocks)]
    ours = build(cfg.model, f.channels * f.size[0] * f.size[1], [], 10, media=media)
    shapes = sorted(tuple(p.shape) for p in script.parameters())
    assert shapes == sorted(tuple(p.shape) for p in ours.parameters() if p.numel())  # no (0, d) table here
    assert script(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_mnist_config_reads_the_written_split(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "mnist.yaml")
    assert cfg.data.train == (CONFIGS.parent / "data" / "mnist" / "train.csv").resolve()
    assert cfg.data.test == (CONFIGS.parent / "data" / "mnist" / "test.csv").resolve()
    image = cfg.features[0]
    assert (image.kind, image.channels, image.size, image.augment, image.flip) == ("image", 1, (28, 28), True, False)
    train = tmp_path / "train.csv"
    train.write_text("path,label\nimages/00000.png,7\n")
    ran = bench.mnist_config(train, 2, 1)
    assert ran.data.train == train and ran.data.test is None and ran.train.epochs == 2
    assert ran.features == cfg.features and ran.model == cfg.model  # the benchmark runs the ready config


def test_png_array_is_the_pixels_over_255(tmp_path: Path) -> None:
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(pixels).save(tmp_path / "a.png")
    got = bench._png_array((tmp_path / "a.png").read_bytes())
    np.testing.assert_allclose(got, pixels[None] / 255, rtol=1e-6)
