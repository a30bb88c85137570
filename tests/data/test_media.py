"""Image and audio features: cells (paths, bytes, base64) -> arrays, bad files as bad rows, the log-mel, inspect."""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from shoal.config import ConfigError, FeatureConfig, LabelConfig, parse_config
from shoal.data.encoder import Encoder
from shoal.data.features import AudioColumn, ImageColumn, Problems
from shoal.data.features.audio import _pcm16_mono, audio_magic, usual_pcm16_mono
from shoal.data.features.media import MediaError, cell_bytes
from shoal.data.logmel import LogMel, mel_filterbank, resample
from shoal.data.readers import BadInputError, BadRowSink, Chunk
from shoal.inspect.media import sniff_media


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def wav(samples: np.ndarray, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def tone(freq: float, seconds: float = 0.25, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")


def encoder(*features: dict[str, object]) -> Encoder:
    return Encoder([FeatureConfig(**f) for f in features], LabelConfig(column="y"))  # type: ignore[arg-type]


def test_image_cell_forms_decode_alike(tmp_path: Path) -> None:
    pixels = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    data = png(pixels)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(data)
    data_file = tmp_path / "rows.csv"
    data_file.write_text("x\n")
    b64 = base64.b64encode(data).decode()
    table = pa.table({"im": ["img/a.png", str(tmp_path / "img" / "a.png"), b64, f"data:image/png;base64,{b64}"],
                      "y": ["1", "0", "1", "0"]})
    enc = encoder({"name": "im", "kind": "image", "channels": 1, "size": [6, 8], "mean": 0.0, "std": 1.0})
    batch = enc.encode(Chunk(table, np.arange(2, 6), str(data_file)), BadRowSink("error"))
    assert enc.dense_dim == 48 and batch.dense.shape == (4, 48)
    np.testing.assert_allclose(batch.dense[0], pixels.ravel() / 255, atol=1e-6)  # exact size: no resampling
    for k in range(1, 4):
        np.testing.assert_array_equal(batch.dense[k], batch.dense[0])


def test_image_bytes_rgb_resize_and_normalise() -> None:
    rgb = np.zeros((20, 10, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    col = ImageColumn("im", "im", 0, channels=3, size=(4, 2), mean=0.5, std=0.25)
    table = pa.table({"im": pa.array([png(rgb)], pa.binary())})
    out = col.read(table, Path("."), Problems())
    assert out.shape == (1, 3 * 4 * 2)
    x = out.reshape(3, 4, 2)
    np.testing.assert_allclose(x[0], 2.0)  # (1 - 0.5) / 0.25
    np.testing.assert_allclose(x[1:], -2.0)  # (0 - 0.5) / 0.25


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """PNG (read by Pillow's PNG reader) and GIF (through Image.open) alike: the header's size is checked first."""
    import shoal.data.features.image as image

    col = ImageColumn("im", "im", 0, channels=1, size=(4, 4))
    gif = io.BytesIO()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(gif, format="GIF")
    for data in (png(np.zeros((5, 5))), gif.getvalue()):
        assert col.pixels(data).shape == (5, 5, 1)
        monkeypatch.setattr(image, "MAX_IMAGE_PIXELS", 24)
        with pytest.raises(MediaError, match="an image of 5 x 5 pixels, over the limit of 24"):
            col.pixels(data)
        monkeypatch.undo()


def test_bad_images_are_bad_rows_naming_file_line_column_and_path(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(png(np.zeros((4, 4))))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    data_file = tmp_path / "rows.csv"
    data_file.write_text("x\n")
    table = pa.table({"im": ["ok.png", "missing.png", "broken.png", None], "y": ["1", "0", "1", "0"]})
    enc = encoder({"name": "im", "kind": "image", "channels": 1, "size": [4, 4]})
    chunk = Chunk(table, np.array([2, 3, 4, 5]), str(data_file))
    with pytest.raises(BadInputError) as err:
        enc.encode(chunk, BadRowSink("error"))
    msg = str(err.value)
    assert f"{data_file}, line 3, column 'im': value 'missing.png': no such file: {tmp_path / 'missing.png'}" in msg
    sink = BadRowSink("quarantine", tmp_path / "q.jsonl")
    batch = enc.encode(chunk, sink)
    sink.close()
    assert len(batch) == 1 and batch.lines.tolist() == [2] and sink.count == 3
    reasons = (tmp_path / "q.jsonl").read_text()
    assert "damaged or truncated image" in reasons or "not an image" in reasons
    assert "missing: a media feature needs" in reasons


def test_cell_bytes_refusals(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="without ';base64,'"):
        cell_bytes("data:image/png,abc", tmp_path)
    with pytest.raises(MediaError, match="empty bytes"):
        cell_bytes(b"", tmp_path)
    payload = bytes(range(60))
    assert cell_bytes(base64.b64encode(payload).decode(), tmp_path) == payload
    with pytest.raises(MediaError, match=f"no such file: {tmp_path / 'images/abcdefgh'}"):
        cell_bytes("images/abcdefgh", tmp_path)  # base64 characters, but too short to be a file's base64


def test_base64_with_a_run_too_long_for_a_file_name_is_read_as_base64(tmp_path: Path) -> None:
    """Base64 of a few hundred bytes holds runs of over 255 characters without a '/', which no file system takes
    as a name (ENAMETOOLONG): such a cell is base64, not a path that cannot be read."""
    rng = np.random.default_rng(0)
    for size in (300, 1000, 3000):
        payload = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        text = base64.b64encode(payload).decode().replace("/", "+")  # no '/': one path component
        assert cell_bytes(text, tmp_path) == base64.b64decode(text)
    image = png(rng.integers(0, 256, (28, 28)))
    assert cell_bytes(base64.b64encode(image).decode(), tmp_path) == image


def test_a_truncated_wav_is_refused_and_a_streamed_one_read() -> None:
    col = AudioColumn("a", "a", 0, sample_rate=8000, seconds=0.5)
    whole = wav(tone(440, seconds=0.3))
    with pytest.raises(MediaError, match="a truncated WAV file: its header says 2,400 samples, it holds 978"):
        col.decode(whole[:2000])
    at = whole.index(b"data") + 4  # the data chunk's size: a streaming writer's placeholder
    streamed = whole[:at] + b"\xff\xff\xff\xff" + whole[at + 4:]
    np.testing.assert_array_equal(col.decode(streamed), col.decode(whole))


def _riff(fmt: bytes, chunks: list[tuple[bytes, bytes]], riff_size: int | None = None) -> bytes:
    """A RIFF WAVE file of a fmt chunk then ``chunks`` (name, payload; odd ones padded), its RIFF size as given."""
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"\0" * (len(fmt) % 2)
    for name, payload in chunks:
        body += name + len(payload).to_bytes(4, "little") + payload + b"\0" * (len(payload) % 2)
    return b"RIFF" + (len(body) if riff_size is None else riff_size).to_bytes(4, "little") + body


def _read_by_wave(data: bytes) -> tuple[bytes, int, int] | None:
    """(samples' bytes, samples the header promises, rate) as the standard library reads them; None for a file
    that is not mono 16-bit PCM or that ``wave`` refuses."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                return None
            return w.readframes(w.getnframes()), w.getnframes(), w.getframerate()
    except (wave.Error, EOFError):
        return None


def test_the_usual_wav_layout_reads_as_the_wave_module_reads_it() -> None:
    """The header read by hand gives ``wave``'s bytes, sample count and rate for every file it takes (whole, cut
    short, odd sizes, a RIFF size shorter or longer than the file, a fmt chunk with extra bytes), and leaves any
    other layout (a chunk before the data, stereo, 8-bit, float, a fmt chunk too short) to ``wave``."""
    pcm = (np.arange(-300, 301, dtype="<i2") * 97).tobytes()  # 601 samples

    def fmt(tag: int = 1, channels: int = 1, bits: int = 16, rate: int = 8000, extra: bytes = b"") -> bytes:
        align = channels * ((bits + 7) // 8)
        return (tag.to_bytes(2, "little") + channels.to_bytes(2, "little") + rate.to_bytes(4, "little")
                + (rate * align).to_bytes(4, "little") + align.to_bytes(2, "little") + bits.to_bytes(2, "little")
                + extra)

    whole = wav(np.frombuffer(pcm, "<i2"), rate=11025)
    at = whole.index(b"data") + 8
    taken = {
        "whole": whole,
        "cut short": whole[:at + 333],
        "cut in the data header": whole[:at - 2],
        "streamed": whole[:at - 4] + b"\xff\xff\xff\xff" + whole[at:],
        "odd data size": _riff(fmt(), [(b"data", pcm + b"\x01")]),
        "riff size short": _riff(fmt(), [(b"data", pcm)], riff_size=400),
        "riff size past the file": _riff(fmt(), [(b"data", pcm)], riff_size=1 << 31),
        "riff size before the data": _riff(fmt(), [(b"data", pcm)], riff_size=20),
        "fmt with extra bytes": _riff(fmt(extra=b"\0\0"), [(b"data", pcm)]),
        "fmt of odd size": _riff(fmt(extra=b"\0"), [(b"data", pcm)]),
        "data and more": _riff(fmt(), [(b"data", pcm), (b"LIST", b"INFOabcd")]),
        "empty data": _riff(fmt(), [(b"data", b"")]),
    }
    for name, data in taken.items():
        usual = usual_pcm16_mono(data)
        if name == "riff size before the data" or name == "cut in the data header":
            assert usual is None, name  # wave's own reading of it
            continue
        assert usual is not None, name
        by_wave = _read_by_wave(data)
        assert by_wave is not None, name
        assert (bytes(usual[0]), usual[1], usual[2]) == by_wave, name
    others = {
        "a chunk before the data": _riff(fmt(), [(b"LIST", b"INFOabcd"), (b"data", pcm)]),
        "stereo": _riff(fmt(channels=2), [(b"data", pcm)]),
        "8-bit": _riff(fmt(bits=8), [(b"data", pcm)]),
        "float": _riff(fmt(tag=3, bits=32), [(b"data", pcm)]),
        "fmt too short": _riff(fmt()[:14], [(b"data", pcm)]),
        "not RIFF": b"RIFX" + whole[4:],
    }
    for name, data in others.items():
        assert usual_pcm16_mono(data) is None, name
    # a chunk before the data: wave reads it, and the decoder gives the same samples as for the usual layout
    listed = _pcm16_mono(others["a chunk before the data"])
    assert listed is not None and bytes(listed[0]) == pcm


def test_audio_decodes_resamples_and_pads() -> None:
    col = AudioColumn("a", "a", 0, sample_rate=4000, seconds=0.5, n_mels=16, window_ms=32, hop_ms=16)
    x = col.decode(wav(tone(440, seconds=0.25, rate=8000)))
    assert x.shape == (2000,) and np.abs(x[:1000]).max() > 0.4 and not x[1001:].any()  # 0.25 s, then silence
    assert col.shape == (1, 16, 1 + 2000 // 64)


def test_flac_stereo_and_other_widths_decode_as_the_16_bit_mono_wav() -> None:
    """FLAC (lossless: the same samples), stereo (channels averaged), 24-bit and float WAV, via libsndfile."""
    import soundfile

    col = AudioColumn("a", "a", 0, sample_rate=8000, seconds=0.5)
    pcm = tone(440, seconds=0.3)
    reference = col.decode(wav(pcm))

    def encoded(samples: np.ndarray, fmt: str, subtype: str) -> bytes:
        buf = io.BytesIO()
        soundfile.write(buf, samples, 8000, format=fmt, subtype=subtype)
        return buf.getvalue()

    flac = encoded(pcm, "FLAC", "PCM_16")
    assert flac[:4] == b"fLaC" and audio_magic(flac)
    np.testing.assert_array_equal(col.decode(flac), reference)
    stereo = wav(np.stack([pcm, np.zeros_like(pcm)], axis=1).reshape(-1), channels=2)
    np.testing.assert_allclose(col.decode(stereo), reference / 2, atol=1e-7)
    for subtype in ("PCM_24", "FLOAT"):
        np.testing.assert_allclose(col.decode(encoded(pcm / 32768.0, "WAV", subtype)), reference, atol=1e-6)
    np.testing.assert_allclose(col.decode(encoded(pcm.astype(np.int16), "FLAC", "PCM_24")), reference, atol=1e-6)


@pytest.mark.parametrize(("data", "reason"), [
    (b"RIFF\x00\x00\x00\x00WAVEjunk", "not a readable WAV or FLAC file"),
    (b"fLaC\x00\x00\x00\x22 a truncated header", "not a readable WAV or FLAC file"),
    (b"ID3 an mp3", "not a WAV or FLAC file"),
])
def test_audio_refusals_say_how_to_convert(data: bytes, reason: str) -> None:
    col = AudioColumn("a", "a", 0, sample_rate=8000)
    with pytest.raises(MediaError, match=reason) as err:
        col.decode(data)
    assert "ffmpeg" in str(err.value) and "BytesIO" not in str(err.value)  # no in-memory file's address


def test_logmel_finds_the_tone_band() -> None:
    rate = 8000
    mel = LogMel(rate, n_fft=256, win_length=200, hop_length=80, n_mels=40)
    low, high = (torch.from_numpy(tone(f, 1.0).astype(np.float32) / 32768)[None] for f in (300, 3000))
    spec_low, spec_high = mel(low)[0], mel(high)[0]  # (M, T)
    assert spec_low.shape == (40, 101)
    assert int(spec_low.mean(1).argmax()) < int(spec_high.mean(1).argmax())
    fb = mel_filterbank(rate, 256, 40)
    assert fb.shape == (40, 129) and np.all(fb.max(axis=1) > 0.5)


def test_resample_keeps_a_tone() -> None:
    x = tone(500, 1.0, 16000).astype(np.float32) / 32768
    y = resample(x, 16000, 8000)
    assert y.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(int(spectrum.argmax()) - 500) <= 1  # 1 Hz bins over one second


def test_media_config_options_and_refusals() -> None:
    base = {"data": {"train": "t.csv"}, "label": {"column": "y"}, "model": {"name": "mlp"}}
    cfg = parse_config({**base, "features": [{"name": "im", "kind": "image", "channels": 1, "size": [28, 28]},
                                             {"name": "s", "kind": "audio", "sample_rate": 8000}]})
    assert cfg.features[0].kind == "image" and cfg.features[1].kind == "audio"
    with pytest.raises(ConfigError, match="channels"):
        parse_config({**base, "features": [{"name": "im", "kind": "image", "channels": 2}]})
    with pytest.raises(ConfigError, match="sample_rate applies to audio features only"):
        parse_config({**base, "features": [{"name": "im", "kind": "image", "sample_rate": 8000}]})


def test_saved_encoder_round_trips() -> None:
    enc = encoder({"name": "im", "kind": "image", "channels": 3, "size": [8, 6], "augment": True},
                  {"name": "s", "kind": "audio", "sample_rate": 8000, "seconds": 0.5})
    back = Encoder.from_dict(enc.to_dict())
    assert back.to_dict() == enc.to_dict()
    assert back.media_inputs == enc.media_inputs and back.dense_dim == enc.dense_dim == 3 * 8 * 6 + 40 * 51


def test_inspect_recognises_media(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png(np.zeros((30, 40))))
    (tmp_path / "b.wav").write_bytes(wav(tone(300, 0.6, 8000)))
    image = sniff_media(["a.png"] * 4, tmp_path)
    assert image is not None and image.kind == "image" and image.options == {"channels": 1, "size": [30, 40]}
    sound = sniff_media(["b.wav"] * 4, tmp_path)
    assert sound is not None and sound.kind == "audio" and sound.options["sample_rate"] == 8000
    import soundfile

    soundfile.write(tmp_path / "c.flac", tone(300, 1.6, 22050), 22050, format="FLAC")
    flac = sniff_media(["c.flac"] * 4, tmp_path)  # by extension, then its rate and length read by libsndfile
    assert flac is not None and flac.kind == "audio" and flac.options == {"sample_rate": 16_000, "seconds": 1.75}
    by_bytes = sniff_media([png(np.zeros((4, 4)))] * 3, tmp_path)
    assert by_bytes is not None and by_bytes.kind == "image" and "bytes" in by_bytes.reason
    assert sniff_media(["a", "b", "c"], tmp_path) is None
    uris = [f"data:image/png;base64,{base64.b64encode(png(np.zeros((5, 6)))).decode()}"] * 3
    by_uri = sniff_media(uris, tmp_path)  # the ';' and ':' once made it a list of ids
    assert by_uri is not None and by_uri.kind == "image" and by_uri.options == {"channels": 1, "size": [5, 6]}
    (tmp_path / "noext").mkdir()
    for i in range(3):
        (tmp_path / "noext" / f"{i:05d}").write_bytes(png(np.zeros((7, 9))))
    (tmp_path / "noext" / "sound").write_bytes(wav(tone(300, 0.5, 8000)))
    named = sniff_media([f"noext/{i:05d}" for i in range(3)], tmp_path)  # no extension: the files' magic bytes
    assert named is not None and named.kind == "image" and "by their content" in named.reason
    assert named.options == {"channels": 1, "size": [7, 9]}
    heard = sniff_media(["noext/sound"] * 2, tmp_path)
    assert heard is not None and heard.kind == "audio"
    assert sniff_media(["noext", "a", "00000"], tmp_path) is None  # a folder, nothing, no file: not media


def test_docs_example_config_is_valid() -> None:
    import yaml

    doc = Path(__file__).resolve().parents[2] / "docs" / "media.md"
    (example,) = doc.read_text(encoding="utf-8").split("```yaml\n")[1:]
    cfg = parse_config(yaml.safe_load(example.split("```")[0]), source="docs/media.md")
    assert [f.kind for f in cfg.features] == ["image", "audio", "sparse", "dense"]


@pytest.mark.data
def test_fsdd_recordings_decode(shared_data: Path) -> None:
    fsdd = shared_data / "fsdd"
    if not (fsdd / "train.csv").is_file():
        pytest.skip(f"{fsdd / 'train.csv'} not found: the FSDD recordings are needed for this test")
    paths = [line.split(",")[0] for line in (fsdd / "train.csv").read_text().splitlines()[1:9]]
    table = pa.table({"path": paths, "y": ["1"] * 8})
    enc = encoder({"name": "path", "kind": "audio", "sample_rate": 8000, "seconds": 1.0})
    batch = enc.encode(Chunk(table, np.arange(2, 10), str(fsdd / "train.csv")), BadRowSink("error"))
    assert batch.dense.shape == (8, 40 * 101) and np.isfinite(batch.dense).all()


def test_inspect_file_proposes_image_for_parquet_bytes(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from shoal.inspect import inspect_file

    images = [png(np.full((10, 12, 3), i * 20)) for i in range(8)]
    pq.write_table(pa.table({"photo": pa.array(images, pa.binary()), "label": [0, 1] * 4}), tmp_path / "ads.parquet")
    profile = inspect_file(tmp_path / "ads.parquet", label="label")
    photo = profile.column("photo")
    assert photo.kind == "image" and photo.media == {"channels": 3, "size": [10, 12]}, photo.reason

    # no label named: in a file of images, a column of 3..100 values anywhere is a candidate (path, class, who)
    pq.write_table(pa.table({"photo": pa.array(images * 5, pa.binary()), "digit": [i % 4 for i in range(40)],
                             "who": [f"p{i % 3}" for i in range(40)]}), tmp_path / "digits.parquet")
    unnamed = inspect_file(tmp_path / "digits.parquet")
    assert unnamed.label is None and unnamed.label_candidates == ("digit", "who")


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # the exporter's own notes
def test_logmel_matches_torch_stft_and_exports_to_onnx(tmp_path: Path) -> None:
    import onnxruntime as ort

    mel = LogMel(8000, n_fft=256, win_length=200, hop_length=80, n_mels=40).eval()
    wave = torch.randn(2, 1600) * 0.1
    spec = torch.stft(wave, 256, hop_length=80, win_length=200, window=torch.hann_window(200), center=True,
                      pad_mode="constant", return_complex=True)  # (B, F, T)
    expected = torch.log(mel.filterbank @ spec.abs().square() + 1e-6)
    torch.testing.assert_close(mel(wave), expected, atol=1e-3, rtol=1e-4)
    path = tmp_path / "logmel.onnx"
    torch.onnx.export(mel, (wave,), str(path), input_names=["wave"], opset_version=17, dynamo=False)
    got = ort.InferenceSession(str(path)).run(None, {"wave": wave.numpy()})[0]
    np.testing.assert_allclose(got, mel(wave).numpy(), atol=1e-4)
