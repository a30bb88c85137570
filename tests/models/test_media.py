"""Image and audio encoders: their vectors join every model; augmentation only in training; train -> export."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shoal.config import parse_config
from shoal.data.features.media import MediaInput
from shoal.data.readers import BadRowSink, Chunk
from shoal.models import available, build
from shoal.models.audio import SpectrogramCNN
from shoal.models.media import WithMedia
from shoal.models.vision import ImageEncoder, ResNet

IMAGE = MediaInput("image", (3, 8, 8), (4, 6), blocks=1, augment=True, flip=True)
SOUND = MediaInput("audio", (1, 8, 10), (4, 5), blocks=1, augment=True)
PLAIN = 4  # two dense features: values and missing flags
BUCKETS = [20, 30]


def _model_config(name: str):  # noqa: ANN202
    params = {"embedding_dim": 4}
    if name == "bytecnn":
        pytest.skip("bytecnn needs a byte sequence input")
    if name == "logistic":
        params = {}
    return parse_config({"data": {"train": "t.csv"}, "label": {"column": "y"},
                         "features": [{"name": "a", "kind": "dense"}], "model": {"name": name, **params}}).model


def _inputs(rows: int = 5) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    dense = torch.randn(rows, PLAIN + IMAGE.size + SOUND.size, generator=gen)
    ids = [torch.randint(0, b, (rows,), generator=gen) for b in BUCKETS]
    return dense, ids, [torch.arange(rows) for _ in BUCKETS]


@pytest.mark.parametrize("name", sorted(set(available()) - {"bytecnn"}))
@pytest.mark.parametrize("outputs", [1, 3])
def test_media_vectors_join_every_model(name: str, outputs: int) -> None:
    torch.manual_seed(0)
    dense, ids, offsets = _inputs()
    model = build(_model_config(name), dense.shape[1], BUCKETS, outputs, media=[IMAGE, SOUND])
    assert isinstance(model, WithMedia)
    model.eval()
    out = model(dense, ids, offsets)
    assert out.shape == ((5,) if outputs == 1 else (5, outputs))
    torch.testing.assert_close(model(dense, ids, offsets), out)  # no augmentation in evaluation
    model.train()
    out.new_zeros(()).add(model(dense, ids, offsets).sum()).backward()
    grads = [p.grad for p in model.encoders.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)  # the encoders learn through the model's loss


def test_resnet_shapes_and_augment_only_in_training() -> None:
    torch.manual_seed(0)
    enc = ImageEncoder(3, (4, 6, 8), blocks=2, augment=True, flip=True)
    x = torch.randn(2, 3, 16, 12)
    enc.eval()
    torch.testing.assert_close(enc(x), enc.resnet(x))
    assert enc(x).shape == (2, 8)
    enc.train()
    assert not torch.allclose(enc.augment(x), x)
    assert len(ResNet(1, (4, 8), blocks=2).stages) == 4
    spec = SpectrogramCNN((4, 8, 8), blocks=1, augment=True)
    assert spec(torch.randn(3, 1, 40, 101)).shape == (3, 8)


def test_dense_too_narrow_for_media_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold media inputs"):
        build(_model_config("mlp"), 10, BUCKETS, 1, media=[IMAGE])


def _write_rows(root: Path, rows: int = 48) -> Path:
    """Images with a bright square at the top left (class a) or bottom right (b), and short tones."""
    rng = np.random.default_rng(0)
    lines = ["picture,sound,shop,price,kind"]
    for i in range(rows):
        y = i % 3
        img = (rng.random((8, 8)) * 60).astype(np.uint8)
        img[:4, :4] += 150 * (y == 0)
        img[4:, 4:] += 150 * (y == 1)
        Image.fromarray(img).save(root / f"{i}.png")
        t = np.arange(400) / 4000
        pcm = (0.5 * np.sin(2 * np.pi * (300 + 600 * y) * t) * 32767).astype("<i2")
        with wave.open(str(root / f"{i}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(4000)
            w.writeframes(pcm.tobytes())
        lines.append(f"{i}.png,{i}.wav,s{i % 4},{rng.random():.3f},{'abc'[y]}")
    (root / "rows.csv").write_text("\n".join(lines) + "\n")
    return root / "rows.csv"


def test_train_load_predict_and_export_parity(tmp_path: Path) -> None:
    import shoal
    from shoal.export.onnx import export_onnx

    data = _write_rows(tmp_path)
    cfg = parse_config({
        "name": "media", "data": {"train": str(data), "valid_fraction": 0.25},
        "label": {"column": "kind", "kind": "multiclass"},
        "features": [{"name": "picture", "kind": "image", "channels": 1, "size": [8, 8], "widths": [4, 8],
                      "augment": True, "flip": False},
                     {"name": "sound", "kind": "audio", "sample_rate": 4000, "seconds": 0.1, "n_mels": 8,
                      "window_ms": 16, "hop_ms": 8, "widths": [4]},
                     {"name": "shop", "kind": "sparse", "buckets": 16}, {"name": "price", "kind": "dense"}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [8]},
        "train": {"epochs": 1, "batch_size": 16, "pictures": False, "threads": 1},
    })
    record = shoal.train(cfg, home=tmp_path / "runs")
    report = shoal.evaluate_file(record.run_id, data, home=tmp_path / "runs")
    assert report["rows"] == 48 and "confusion" in report
    bundle = shoal.load(record.run_id, home=tmp_path / "runs")
    assert bundle.encoder.media_inputs[0].shape == (1, 8, 8)
    exported = export_onnx(Path(record.artifact_dir) / "bundle", parity_rows=48)
    fp32 = exported.parity["fp32"]
    assert fp32["ok"] and fp32["max_abs_logit_diff"] < 1e-4, fp32
    from shoal.serving.schema import RequestSchema

    schema = RequestSchema(bundle.encoder, 10, 1024, max_media_bytes=4096)  # served: base64 only, never a path
    assert all(not f.read_paths for f in bundle.encoder.media_features)
    kinds = {f["name"]: (f["kind"], f["type"], f.get("encoding")) for f in schema.describe()}
    assert kinds["picture"][0] == "image" and kinds["picture"][1].startswith("base64 of a PNG/JPEG/WebP")
    assert kinds["sound"] == ("audio", "base64 of a WAV or FLAC file", "base64")
    warm = bundle.encoder.encode(Chunk(schema.table([schema.placeholder()]), np.arange(1), "warm-up"),
                                 BadRowSink("keep"), with_label=False)  # a grey image, a silent sound: good rows
    assert len(warm) == 1


@pytest.mark.parametrize("name", sorted(set(available()) - {"bytecnn"}))
def test_the_prior_sets_the_models_output_bias_not_an_encoders(name: str) -> None:
    """With media, the family's output layer starts at the class priors (the logits move by exactly that), not a
    layer of the image or sound CNN of the same width."""
    from shoal.models import init_output_bias

    torch.manual_seed(0)
    dense, ids, offsets = _inputs()
    model = build(_model_config(name), dense.shape[1], BUCKETS, 4, media=[IMAGE, SOUND]).eval()
    before = model(dense, ids, offsets).detach()
    encoders = [p.detach().clone() for p in model.encoders.parameters()]
    prior = [0.4, 0.3, 0.2, 0.1]
    assert init_output_bias(model, "multiclass", prior)
    after = model(dense, ids, offsets).detach()
    shift = after - before  # the same for every row: the bias moved by log(prior) - its random start
    torch.testing.assert_close(shift, shift[:1].expand_as(shift), rtol=1e-5, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(encoders, model.encoders.parameters(), strict=True))
