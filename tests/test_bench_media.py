"""benchmarks/media.py's parts that run anywhere: the plain-PyTorch peers are shoal's networks, layer for layer, with
shoal's log-mel, configs/mnist.yaml reads the split the docs name, and the held-out speaker is one speaker. The
benchmark itself needs ../shared/data and minutes."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks import media as bench
from benchmarks import media_script as script
from shoal.config import load_config
from shoal.data.features.audio import AudioColumn
from shoal.data.features.media import MediaInput
from shoal.models import build

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_torch_script_builds_the_network_shoal_trains() -> None:
    cfg = load_config(CONFIGS / "mnist.yaml")
    f = cfg.features[0]
    plain = script.PlainResNet(f.channels, f.widths, f.blocks, cfg.model.hidden[0], 10)
    media = [MediaInput("image", (f.channels, *f.size), tuple(f.widths), f.blocks)]
    ours = build(cfg.model, f.channels * f.size[0] * f.size[1], [], 10, media=media)
    shapes = sorted(tuple(p.shape) for p in plain.parameters())
    assert shapes == sorted(tuple(p.shape) for p in ours.parameters() if p.numel())  # no (0, d) table here
    assert plain(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_torch_script_builds_the_spectrogram_cnn_shoal_trains(tmp_path: Path) -> None:
    cfg = bench.config("fsdd", tmp_path / "train.csv", "digit", bench.SOUND, 2, 1)
    col = AudioColumn.from_config(cfg.features[0])
    plain = script.PlainSpectrogramCNN(col.widths, col.blocks, cfg.model.hidden[0], 10)
    media = [MediaInput("audio", col.shape, col.widths, col.blocks)]
    ours = build(cfg.model, int(np.prod(col.shape)), [], 10, media=media)
    shapes = sorted(tuple(p.shape) for p in plain.parameters())
    assert shapes == sorted(tuple(p.shape) for p in ours.parameters() if p.numel())
    assert plain(torch.zeros(2, *col.shape)).shape == (2, 10)


def test_fsdd_feature_is_the_ready_configs() -> None:
    ready = load_config(CONFIGS / "fsdd.yaml")
    ran = bench.config("fsdd", ready.data.train, "digit", bench.SOUND, 24, 2)
    assert ran.features == ready.features and ran.model == ready.model


def test_torch_script_logmel_is_shoals(tmp_path: Path) -> None:
    """The script's WAV reading and torch.stft log-mel give shoal's audio feature's spectrogram."""
    rng = np.random.default_rng(0)
    t = np.arange(6000) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 500, t.size)).astype("<i2")  # 0.75 s: padded to 1 s
    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes())
    data = (tmp_path / "a.wav").read_bytes()
    col = AudioColumn.from_config(bench.config("fsdd", tmp_path / "t.csv", "digit", bench.SOUND, 2, 1).features[0])
    ours = col.finish(col.decode(data)[None])[:, 0]  # (1, M, T)
    wave_ = script.wav_array(data, 8000, col.samples)
    np.testing.assert_allclose(wave_, col.decode(data), atol=1e-7)
    got = script.PlainLogMel(8000, 40, 25.0, 10.0)(torch.from_numpy(wave_)[None]).numpy()
    assert got.shape == ours.shape == (1, 40, 101)
    np.testing.assert_allclose(got, ours, atol=1e-3)


def test_heldout_speaker_is_the_first_speaker(tmp_path: Path) -> None:
    fsdd = tmp_path / "fsdd"
    fsdd.mkdir()
    (fsdd / "train.csv").write_text("path,digit,speaker\nr/0_theo_9.wav,0,theo\nr/1_george_9.wav,1,george\n")
    (fsdd / "test.csv").write_text("path,digit,speaker\nr/0_theo_0.wav,0,theo\nr/1_george_0.wav,1,george\n")
    train, test, speaker = bench.write_heldout_speaker(fsdd, tmp_path / "out")
    assert speaker == "george"
    here = fsdd.resolve() / "r"
    assert [r["path"] for r in bench._read_csv(train)] == [str(here / "0_theo_9.wav"), str(here / "0_theo_0.wav")]
    assert [r["path"] for r in bench._read_csv(test)] == [str(here / "1_george_9.wav"), str(here / "1_george_0.wav")]


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
    got = script.png_array((tmp_path / "a.png").read_bytes())
    np.testing.assert_allclose(got, pixels[None] / 255, rtol=1e-6)


def test_equal_accuracy_times_each_system_to_the_common_accuracy() -> None:
    """The common accuracy is the least accurate system's best; each system's time is its first epoch at it plus
    what its call took after its last epoch."""
    rows = bench.equal_accuracy("fsdd", {"shoal": ([(10.0, 0.90), (14.0, 0.97), (18.0, 0.99)], 20.0),
                                         "torch-script": ([(8.0, 0.95), (11.0, 0.97), (14.0, 0.96)], 14.5)})
    got = {(r["system"], r["metric"]): r["value"] for r in rows}
    assert got["shoal", "held_out_accuracy_common"] == got["torch-script", "held_out_accuracy_common"] == 0.97
    assert got["shoal", "train_s_to_common_accuracy"] == 14.0 + (20.0 - 18.0)
    assert got["torch-script", "train_s_to_common_accuracy"] == 11.0 + (14.5 - 14.0)
    # another pair of runs (--abba) is timed to the first pair's common accuracy; one that never reaches it, to its end
    again = bench.equal_accuracy("fsdd", {"shoal": ([(9.0, 0.96), (12.0, 0.98)], 13.0),
                                          "torch-script": ([(7.0, 0.93), (10.0, 0.95)], 10.5)}, level=0.97)
    got = {(r["system"], r["metric"]): r["value"] for r in again}
    assert got["shoal", "train_s_to_common_accuracy"] == 12.0 + 1.0
    assert got["torch-script", "train_s_to_common_accuracy"] == 10.0 + 0.5


def test_script_holds_out_the_rows_it_is_given(tmp_path: Path) -> None:
    """With shoal's held-out files, the script validates on exactly those rows: its held-out accuracy after each
    epoch is the share of them it gets right, and it trains on the others."""
    torch.manual_seed(0)
    cfg = bench.config("fsdd", tmp_path / "train.csv", "digit", bench.SOUND, 3, 1)
    x, y = torch.randn(40, 3), torch.arange(40) % 2
    held = script.held_out_mask([f"r/{i}.wav" for i in range(40)], {f"r/{i}.wav" for i in range(0, 40, 4)})
    assert held is not None and int(held.sum()) == 10
    seen: list[int] = []

    class Spy(torch.nn.Linear):
        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            seen.append(len(inp))
            return super().forward(inp)

    model, curve = script.fit(Spy(3, 2), x, y, cfg, lambda b: b, held)
    assert len(curve) == 3 and [s for s, _ in curve] == sorted(s for s, _ in curve)
    with torch.no_grad():
        right = float((model(x[held]).argmax(1) == y[held]).float().mean())
    assert right in {a for _, a in curve}  # the best epoch's weights, scored on the held-out rows
    assert 10 in seen and max(seen) <= 30  # validations of the 10 held-out rows, batches from the other 30
    assert script.held_out_mask(["a"], None) is None


def test_timer_gives_its_start() -> None:
    from benchmarks.common import timer

    with timer() as t:
        inside = t.started
    assert inside > 0 and t.seconds >= 0 and t.started == inside
