"""Image and audio features in the raw ONNX export: the in-graph resize equals Pillow's bit for bit, the in-graph
log-mel equals the encoder's within LOGMEL_TOLERANCE, and image / audio bundles give the Python encoder +
PyTorch's probabilities within 1e-5."""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest
import torch
from PIL import Image

from shoal.artifacts.bundle import Bundle, load_bundle, save_bundle
from shoal.config import parse_config
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.export.raw import (
    RawOnnxModel,
    export_raw_onnx,
    parity,
    preprocess_model,
    raw_contract,
    raw_feed,
    synthetic_raw_rows,
)
from shoal.export.raw_bound import BoundMedia, BoundRows
from shoal.export.raw_media import LOGMEL_TOLERANCE, media_column, media_feed, synthetic_media
from shoal.export.raw_runtime import raw_graph_refusal
from shoal.models import build
from shoal.runtime.onnx import run_session

IMAGE = {"name": "picture", "kind": "image", "channels": 3, "size": [7, 10], "mean": 0.4, "std": 0.3, "widths": [4]}
GREY = {"name": "digit", "kind": "image", "channels": 1, "size": [8, 8], "widths": [4]}
AUDIO = {"name": "sound", "kind": "audio", "sample_rate": 4000, "seconds": 0.1, "n_mels": 8, "window_ms": 16,
         "hop_ms": 8, "widths": [4]}
SPEECH = {"name": "speech", "kind": "audio", "sample_rate": 16000, "seconds": 0.25, "n_mels": 40, "widths": [4]}
# frames that neither overlap nor leave gaps (a distilled student's spectrogram): the DFT as one MatMul
FRAMED = {"name": "voice", "kind": "audio", "sample_rate": 8000, "seconds": 0.2, "n_mels": 16, "window_ms": 12.5,
          "hop_ms": 12.5, "widths": [4]}
# ... with the window filling the DFT (a distilled student's since; no zero taps, so no padding saved on either side)
WHOLE = {"name": "call", "kind": "audio", "sample_rate": 8000, "seconds": 0.3, "n_mels": 16, "window_ms": 16,
         "hop_ms": 16, "widths": [4]}


def _encoder(features: list[dict[str, Any]]) -> Encoder:
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"}, "features": features,
                        "model": {"name": "mlp", "hidden": [8]}})
    return Encoder(cfg.features, cfg.label)


def _blocks(encoder: Encoder, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(the graph's media blocks, the encoder's), each (N, sum of C*H*W)."""
    session = ort.InferenceSession(preprocess_model(encoder).SerializeToString(), providers=["CPUExecutionProvider"])
    names = [f"raw/media/{m.name}" for m in encoder.media_features]
    got = np.concatenate(session.run(names, raw_feed(table, raw_contract(encoder))), axis=1)
    batch = encoder.encode(Chunk(table, np.arange(1, table.num_rows + 1), "rows"), BadRowSink("error"),
                           with_label=False)
    return got, batch.dense[:, batch.dense.shape[1] - got.shape[1]:]


def test_in_graph_resize_equals_pillow_bit_for_bit() -> None:
    """PNG and JPEG, grey / RGB / RGBA / palette, 1 x 1 to 4x the size, upscaled and shrunk on either axis (both
    Pillow pass orders), in one padded batch."""
    encoder = _encoder([IMAGE, GREY | {"mean": 0.0, "std": 1.0}])
    table = synthetic_raw_rows(encoder, 120, seed=1)
    got, want = _blocks(encoder, table)
    np.testing.assert_array_equal(got, want)


def test_in_graph_logmel_is_close_to_the_encoder() -> None:
    """Sounds at the feature's rate and others (resampled in the feed), shorter and longer than ``seconds``,
    silence; three settings (n_fft 64 and 512 over overlapping frames, 128 over frames end to end)."""
    encoder = _encoder([AUDIO, SPEECH, FRAMED, WHOLE])
    got, want = _blocks(encoder, synthetic_raw_rows(encoder, 60, seed=2))
    assert np.abs(got - want).max() <= LOGMEL_TOLERANCE
    ops = [n.op_type for n in preprocess_model(encoder).graph.node]
    assert ops.count("Conv") == 2  # the overlapping frames' DFT; the framed features' is a Reshape and a MatMul


def test_the_graph_cuts_and_pads_the_wave() -> None:
    """A caller's waveform longer than ``seconds`` is cut, a shorter one (a batch's shorter sounds padded with
    zeros by the caller) padded with silence; the frames never read past the sound's ``seconds``."""
    for feature in (AUDIO, FRAMED, WHOLE):
        encoder = _encoder([feature])
        col, name = encoder.media_features[0], feature["name"]
        session = ort.InferenceSession(preprocess_model(encoder).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == [f"{name}.wave"]
        rng = np.random.default_rng(0)
        wave = (rng.standard_normal((3, col.samples + 50)) * 0.3).astype(np.float32)
        wave[1, col.samples // 2:] = 0  # a shorter sound in the batch
        wave[2] = 0
        (got,) = session.run([f"raw/media/{name}"], {f"{name}.wave": wave})
        expected = wave[:, : col.samples]
        np.testing.assert_allclose(got, col.finish(expected).reshape(3, -1), atol=LOGMEL_TOLERANCE)
        (short,) = session.run([f"raw/media/{name}"], {f"{name}.wave": wave[:, :10]})
        cut = np.zeros((3, col.samples), np.float32)
        cut[:, :10] = wave[:, :10]
        np.testing.assert_allclose(short, col.finish(cut).reshape(3, -1), atol=LOGMEL_TOLERANCE)


def test_contract_describes_the_media_inputs() -> None:
    contract = raw_contract(_encoder([IMAGE, AUDIO, {"name": "x", "kind": "dense"}]))
    assert contract["version"] == 4
    pixels, sizes = contract["inputs"]["picture.pixels"], contract["inputs"]["picture.sizes"]
    assert pixels["dtype"] == "uint8" and pixels["shape"] == ["N", "h", "w", 3] and sizes["shape"] == ["N", 2]
    wave = contract["inputs"]["sound.wave"]
    assert wave["dtype"] == "float32" and wave["shape"] == ["N", "S"] and "sound.lengths" not in contract["inputs"]
    audio = next(f for f in contract["features"] if f["kind"] == "audio")
    assert (audio["samples"], audio["frames"], audio["n_fft"], audio["hop_length"]) == (400, 13, 64, 32)
    assert "bad row" in pixels["missing"] and "4000 Hz" in wave["about"]
    assert raw_contract(_encoder([{"name": "x", "kind": "dense"}]))["version"] == 2  # older exports stay valid
    old = {**audio, "inputs": {**audio["inputs"], "lengths": "sound.lengths"}}  # version 3 also took the lengths
    fed = media_feed(old, [synthetic_media(np.random.default_rng(0), media_column(audio), 1)[0]] * 2)
    assert fed["sound.lengths"].tolist() == [400, 400] and fed["sound.wave"].shape == (2, 400)


def test_feed_takes_bytes_and_base64_never_a_path(tmp_path: Path) -> None:
    encoder = _encoder([GREY])
    contract = raw_contract(encoder)
    out = io.BytesIO()
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20).save(out, format="PNG")
    png = out.getvalue()
    (tmp_path / "a.png").write_bytes(png)
    b64 = base64.b64encode(png).decode()
    feeds = [raw_feed([{"digit": cell}], contract) for cell in (png, b64, f"data:image/png;base64,{b64}")]
    for feed in feeds:
        np.testing.assert_array_equal(feed["digit.pixels"], feeds[0]["digit.pixels"])
        np.testing.assert_array_equal(feed["digit.sizes"], [[3, 4]])
    table = pa.table({"digit": pa.array([png, png], pa.binary())})
    np.testing.assert_array_equal(raw_feed(table, contract)["digit.pixels"][0], feeds[0]["digit.pixels"][0])
    with pytest.raises(ValueError, match=r"row 1, column 'digit': .*never a path"):
        raw_feed([{"digit": png}, {"digit": str(tmp_path / "a.png")}], contract)
    with pytest.raises(ValueError, match=r"row 0, column 'digit': missing"):
        raw_feed([{"digit": None}], contract)
    with pytest.raises(ValueError, match=r"not an image Pillow can read"):
        raw_feed([{"digit": b"GIF89a not really"}], contract)


# -- models: probabilities against the Python encoder + PyTorch ----------------------------------------------------
def _bundle(tmp: Path, features: list[dict[str, Any]], classes: list[str] | None = None) -> tuple[Path, Bundle]:
    label: dict[str, Any] = {"column": "y"} if classes is None else {"column": "y", "kind": "multiclass",
                                                                        "classes": classes}
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": label, "features": features,
                        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [8]}})
    encoder = Encoder(cfg.features, cfg.label)
    encoder.fit([Chunk(synthetic_raw_rows(encoder, 40, seed=5), np.arange(1, 41), "fit")], BadRowSink("error"))
    torch.manual_seed(0)
    net = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots,
                media=encoder.media_inputs).eval()
    meta: dict[str, Any] = {"train_base_rate": 0.3}
    if classes:
        meta |= {"classes": classes, "train_class_prior": [1 / len(classes)] * len(classes)}
    save_bundle(tmp / "bundle", net, encoder, cfg, meta)
    return tmp / "bundle", load_bundle(tmp / "bundle")


def test_image_audio_id_and_number_bundle(tmp_path: Path) -> None:
    features = [IMAGE, AUDIO, {"name": "shop", "kind": "sparse", "buckets": 16},
                {"name": "price", "kind": "dense", "transform": "log1p"}]
    folder, bundle = _bundle(tmp_path, features)
    report = export_raw_onnx(folder, parity_rows=64)
    assert report.max_abs_proba_diff <= 1e-5
    model = RawOnnxModel(report.path)
    for rows in (1, 9):
        assert parity(bundle, model, synthetic_raw_rows(bundle.encoder, rows, seed=rows)) <= 1e-5
    written = json.loads(report.contract_path.read_text(encoding="utf-8"))
    assert {"picture.pixels", "picture.sizes", "sound.wave"} <= set(written["inputs"])
    assert raw_graph_refusal(bundle, folder) is None  # serving takes the raw graph for this bundle


def test_multiclass_media_only_bundle(tmp_path: Path) -> None:
    """No dense, id or text feature: the dense input is the media blocks alone."""
    folder, bundle = _bundle(tmp_path, [GREY, SPEECH, WHOLE], classes=["a", "b", "c"])
    model = RawOnnxModel(export_raw_onnx(folder, parity_rows=24).path)
    table = synthetic_raw_rows(bundle.encoder, 12, seed=3)
    assert model.predict_proba(table).shape == (12, 3) and parity(bundle, model, table) <= 1e-5


def _wav(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(samples.astype("<i2"), channels).tobytes())
    return out.getvalue()


def test_one_row_of_sounds_is_bound_and_answers_as_the_feed(tmp_path: Path) -> None:
    """A row of sounds alone goes through inputs bound once (:class:`BoundMedia`): usual WAVs converted straight
    into the bound buffers give the plain feed's probabilities exactly, a shorter sound after a longer one keeps
    nothing of it, and a sound the binding does not take (another rate, stereo, base64, missing) goes the plain
    way: the same answer, or the feed's error naming the row."""
    folder, bundle = _bundle(tmp_path, [WHOLE, FRAMED], classes=["a", "b", "c"])
    model = RawOnnxModel(export_raw_onnx(folder, parity_rows=8).path)
    assert BoundRows(model.session, model.contract, "probabilities").kind is BoundMedia
    rng = np.random.default_rng(4)
    noise = [(rng.standard_normal(n) * 6000).clip(-32768, 32767) for n in (5000, 900, 1600, 2400, 10)]
    rows = [{"call": _wav(noise[0], 8000), "voice": _wav(noise[1], 8000)},  # longer than 0.3 s; shorter than 0.2 s
            {"call": _wav(noise[4], 8000), "voice": _wav(noise[2], 8000)},  # a tiny sound after a long one
            {"call": _wav(noise[3], 16000), "voice": _wav(noise[2], 8000)},  # another rate: resampled by the feed
            {"call": _wav(noise[3], 8000, channels=2), "voice": _wav(noise[1], 8000)},  # stereo
            {"call": base64.b64encode(_wav(noise[3], 8000)).decode(), "voice": _wav(noise[2], 8000)}]
    bound = BoundMedia(model.session, model.contract, "probabilities")
    assert [bound.run(r) is None for r in rows] == [False, False, True, True, False]
    for row in rows:
        want = run_session(model.session, ["probabilities"], raw_feed([row], model.contract))[0]
        np.testing.assert_array_equal(model.predict_proba([row]), want)
    assert parity(bundle, model, pa.Table.from_pylist(rows[:4])) <= 1e-5  # the encoder reads bytes in a binary column
    with pytest.raises(ValueError, match="row 0, column 'call'"):
        model.predict_proba([{"call": None, "voice": rows[0]["voice"]}])


def _image(rng: np.random.Generator, h: int, w: int, mode: str, fmt: str = "PNG") -> bytes:
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(out, format=fmt)
    return out.getvalue()


def test_one_row_of_images_is_bound_and_answers_as_the_feed(tmp_path: Path) -> None:
    """A row of images alone goes through inputs bound once (:class:`BoundMedia`): plain PNGs decoded straight
    into the bound pixels, a new buffer when an image of another size comes (and the old one's pixels gone from
    the answer), JPEGs and converted PNGs through Pillow, base64 too: the plain feed's probabilities exactly. A
    missing cell or an image over BOUND_PIXELS goes the plain way (the feed's answer, or its error naming the
    row)."""
    folder, bundle = _bundle(tmp_path, [GREY, IMAGE], classes=["a", "b", "c"])
    model = RawOnnxModel(export_raw_onnx(folder, parity_rows=8).path)
    assert BoundRows(model.session, model.contract, "probabilities").kind is BoundMedia
    rng = np.random.default_rng(5)
    rows = [{"digit": _image(rng, 28, 28, "L"), "picture": _image(rng, 20, 30, "RGB")},
            {"digit": _image(rng, 28, 28, "L"), "picture": _image(rng, 20, 30, "RGB")},  # the same buffers again
            {"digit": _image(rng, 5, 3, "L"), "picture": _image(rng, 9, 4, "RGB")},  # other sizes: rebound
            {"digit": _image(rng, 28, 28, "RGB"), "picture": _image(rng, 20, 30, "L")},  # converted by Pillow
            {"digit": _image(rng, 12, 16, "L", "JPEG"), "picture": _image(rng, 20, 30, "RGB", "JPEG")},
            {"digit": base64.b64encode(_image(rng, 28, 28, "L")).decode(), "picture": _image(rng, 7, 10, "RGB")},
            {"digit": _image(rng, 1025, 1024, "L"), "picture": _image(rng, 7, 10, "RGB")}]  # over BOUND_PIXELS
    bound = BoundMedia(model.session, model.contract, "probabilities")
    answers = [bound.run(r) for r in rows]
    assert [a is None for a in answers] == [False] * 6 + [True]
    for row, answer in zip(rows, answers, strict=True):
        want = run_session(model.session, ["probabilities"], raw_feed([row], model.contract))[0]
        if answer is not None:
            np.testing.assert_array_equal(answer, want)
        np.testing.assert_array_equal(model.predict_proba([row]), want)
    assert parity(bundle, model, pa.Table.from_pylist(rows[:5])) <= 1e-5
    assert bound.run({"digit": None, "picture": rows[0]["picture"]}) is None
    with pytest.raises(ValueError, match="row 0, column 'digit'"):
        model.predict_proba([{"digit": b"not an image", "picture": rows[0]["picture"]}])


# -- the usual size's branch: constant weights ---------------------------------------------------------------------
def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("usual", [(28, 28), (8, 8), (5, 30), (40, 9), (3, 3)])
def test_usual_size_branch_equals_pillow_bit_for_bit(usual: tuple[int, int]) -> None:
    """A batch of only usual-size images takes the constant weights (shrunk, the feature's own size, grown, and
    the sizes where Pillow 13 takes the vertical pass first); a batch with one other size takes the general
    branch; both give Pillow's pixels."""
    encoder = _encoder([GREY | {"mean": 0.0, "std": 1.0}])
    col = encoder.media_features[0]
    model = preprocess_model(encoder, usual_sizes={"digit": usual})
    assert [n.op_type for n in model.graph.node].count("If") == 1
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(sum(usual))
    same = [_png(rng.integers(0, 256, usual, dtype=np.uint8)) for _ in range(5)]
    for cells in (same, same[:1], [*same, _png(rng.integers(0, 256, (7, 13), dtype=np.uint8))]):
        (got,) = session.run(["raw/media/digit"], raw_feed([{"digit": c} for c in cells], raw_contract(encoder)))
        want = np.stack([col.decode(c).reshape(-1) for c in cells])
        np.testing.assert_array_equal(got, want)


def test_pillow_weights_match_the_graph_and_sum_to_one() -> None:
    from shoal.export.raw_media import PRECISION_BITS, pillow_weights

    for size, out in ((28, 16), (16, 28), (28, 28), (1, 5), (97, 3)):
        w = pillow_weights(size, out)
        assert w.shape == (size, out) and np.all(w >= 0) and np.all(w == np.floor(w))
        assert np.all(np.abs(w.sum(axis=0) - (1 << PRECISION_BITS)) <= size)  # each output's weights: ~1.0
    np.testing.assert_array_equal(pillow_weights(6, 6), np.eye(6) * (1 << PRECISION_BITS))


def test_usual_image_size_counts_the_decoded_sizes(tmp_path: Path) -> None:
    from shoal.export.raw_media import usual_image_size

    col = _encoder([GREY]).media_features[0]
    a, b = _png(np.zeros((4, 6), np.uint8)), _png(np.zeros((9, 2), np.uint8))
    (tmp_path / "a.png").write_bytes(a)
    assert usual_image_size(col, [a, "a.png", b, None, b"not an image"], tmp_path) == (4, 6)  # 2 of 3 decoded
    assert usual_image_size(col, [a, b, _png(np.zeros((1, 1), np.uint8))], tmp_path) is None  # none has half
    assert usual_image_size(col, [None], tmp_path) is None


def test_export_finds_the_usual_size_in_the_data_file(tmp_path: Path) -> None:
    """The export reads the config's data file (image paths relative to it), takes the size most images have,
    and checks parity on rows of that size too; the served graph answers both sizes."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    lines = ["path,y"]
    for i in range(12):
        shape = (20, 14) if i % 4 else (9, 9)
        (data / f"{i}.png").write_bytes(_png(rng.integers(0, 256, shape, dtype=np.uint8)))
        lines.append(f"{i}.png,{i % 2}")
    (data / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = parse_config({"data": {"train": str(data / "train.csv")}, "label": {"column": "y"},
                        "features": [GREY | {"column": "path"}], "model": {"name": "mlp", "hidden": [8]}})
    encoder = Encoder(cfg.features, cfg.label)
    torch.manual_seed(0)
    net = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots,
                media=encoder.media_inputs).eval()
    save_bundle(tmp_path / "bundle", net, encoder, cfg, {"train_base_rate": 0.5})
    report = export_raw_onnx(tmp_path / "bundle", parity_rows=16)
    assert report.usual_sizes == {"digit": (20, 14)} and report.max_abs_proba_diff <= 1e-5
    bundle = load_bundle(tmp_path / "bundle")
    model = RawOnnxModel(report.path)
    cells = [(data / f"{i}.png").read_bytes() for i in range(4)]
    table = pa.table({"path": pa.array(cells, pa.binary())})
    assert parity(bundle, model, table) <= 1e-5 and parity(bundle, model, table.slice(1, 1)) <= 1e-5
    from typer.testing import CliRunner

    from shoal.cli.main import app

    result = CliRunner().invoke(app, ["export", str(tmp_path / "bundle"), "--raw", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "most images are 20 x 14" in " ".join(result.output.split())


def test_form_auto_times_on_the_data_files_media_read_as_bytes(tmp_path: Path) -> None:
    """``--raw-form auto`` (an id feature beside an image column of paths) times both forms on the run's rows:
    each path's file is read as the caller would send it (the raw graph takes bytes, never a path)."""
    from shoal.export.raw import timing_rows

    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    data.mkdir()
    lines = ["path,shop,y"]
    for i in range(10):
        (data / f"{i}.png").write_bytes(_png(rng.integers(0, 256, (9, 9), dtype=np.uint8)))
        lines.append(f"{i}.png,s{i % 3},{i % 2}")
    (data / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = parse_config({"data": {"train": str(data / "train.csv")}, "label": {"column": "y"},
                        "features": [GREY | {"column": "path"}, {"name": "shop", "kind": "sparse", "buckets": 16}],
                        "model": {"name": "mlp", "hidden": [8]}})
    encoder = Encoder(cfg.features, cfg.label)
    torch.manual_seed(0)
    net = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots,
                media=encoder.media_inputs).eval()
    save_bundle(tmp_path / "bundle", net, encoder, cfg, {"train_base_rate": 0.5})
    report = export_raw_onnx(tmp_path / "bundle", parity_rows=16, form="auto")
    assert set(report.form_ms) == {"unrolled", "loop"} and report.max_abs_proba_diff <= 1e-5
    # parity on the data file's own images too, not only on synthetic ones
    assert report.own_rows_source == str(data / "train.csv") and report.own_rows_diff <= 1e-5
    rows, source = timing_rows(load_bundle(tmp_path / "bundle"), tmp_path / "bundle", 8)
    assert source == str(data / "train.csv") and rows.num_rows == 8
    assert rows.column("path").to_pylist()[0] == (data / "0.png").read_bytes()
