"""`shoal serve` with image and audio features: base64 values only, never paths; limits and bad values are 4xx
naming the row and the field; the answers equal `shoal predict`'s on the same rows."""

from __future__ import annotations

import base64
import io
import pathlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from shoal.config import parse_config
from shoal.data.features.base import Problems
from shoal.data.features.image import ImageColumn
from shoal.serving.app import ServeSettings, create_app
from shoal.serving.offline import predict_file
from tests.serving.conftest import png, wav

with warnings.catch_warnings():  # starlette asks for httpx2 here; the client works the same
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROWS = 24
MAX_MEDIA = 2048  # bytes: the test images and sounds are under it, a larger PNG is over


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path, list[dict[str, Any]]]]:
    """A tiny image + audio + id + number bundle, its data file (Parquet, media as bytes) and the same rows as a
    request would send them (base64)."""
    import shoal

    root = tmp_path_factory.mktemp("media-serve")
    rng = np.random.default_rng(0)
    pictures, sounds = [], []
    for i in range(ROWS):
        pictures.append(png(rng, i % 3))
        sounds.append(wav(i % 3))
    table = pa.table({"picture": pa.array(pictures, pa.binary()), "sound": pa.array(sounds, pa.binary()),
                      "shop": [f"s{i % 4}" for i in range(ROWS)], "price": rng.random(ROWS).round(3),
                      "kind": ["abc"[i % 3] for i in range(ROWS)]})
    data = root / "rows.parquet"
    pq.write_table(table, data)
    cfg = parse_config({
        "name": "media", "data": {"train": str(data), "valid_fraction": 0.25},
        "label": {"column": "kind", "kind": "multiclass"},
        "features": [{"name": "picture", "kind": "image", "channels": 1, "size": [8, 8], "widths": [4]},
                     {"name": "sound", "kind": "audio", "sample_rate": 4000, "seconds": 0.1, "n_mels": 8,
                      "window_ms": 16, "hop_ms": 8, "widths": [4]},
                     {"name": "shop", "kind": "sparse", "buckets": 16}, {"name": "price", "kind": "dense"}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [8]},
        "train": {"epochs": 1, "batch_size": 16, "pictures": False, "threads": 1},
    })
    record = shoal.train(cfg, home=root / "runs")
    bundle = Path(record.artifact_dir) / "bundle"
    rows = [{"picture": base64.b64encode(p).decode(), "sound": base64.b64encode(s).decode(), "shop": sh, "price": pr}
            for p, s, sh, pr in zip(pictures, sounds, table["shop"].to_pylist(), table["price"].to_pylist(),
                                    strict=True)]
    settings = ServeSettings(max_media_bytes=MAX_MEDIA, backend="torch")
    with TestClient(create_app(bundle, settings, home=root / "runs")) as client:
        yield client, data, rows


def _predict(client: TestClient, rows: list[dict[str, Any]]) -> Any:
    return client.post("/predict", json={"rows": rows})


def test_base64_rows_answer_as_shoal_predict(served: tuple[TestClient, Path, list[dict[str, Any]]],
                                             tmp_path: Path) -> None:
    client, data, rows = served
    r = _predict(client, rows)
    assert r.status_code == 200, r.text
    got = np.array([[p["probabilities"][c] for c in "abc"] for p in r.json()["predictions"]])
    folder = Path(client.get("/model").json()["folder"])
    predict_file(folder, data, tmp_path / "out.parquet", backend="torch")
    out = pq.read_table(tmp_path / "out.parquet")
    want = np.stack([out[f"p_{c}"].to_numpy() for c in "abc"], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # a data URI is base64 too
    uri = dict(rows[0], picture="data:image/png;base64," + rows[0]["picture"])
    r = _predict(client, [uri])
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([r.json()["predictions"][0]["probabilities"][c] for c in "abc"], want[0], atol=1e-5)


def test_model_describes_media_fields(served: tuple[TestClient, Path, list[dict[str, Any]]]) -> None:
    client, _, _ = served
    fields = {f["name"]: f for f in client.get("/model").json()["fields"]}
    assert fields["picture"]["kind"] == "image" and fields["picture"]["encoding"] == "base64"
    assert fields["picture"]["type"].startswith("base64 of a PNG/JPEG/WebP")
    assert fields["sound"]["type"] == "base64 of a WAV or FLAC file"
    assert fields["picture"]["max_bytes"] == MAX_MEDIA
    spec = client.get("/openapi.json").json()["components"]["schemas"]["Row"]["properties"]
    assert "never a file path" in spec["picture"]["description"]


def test_a_path_is_refused_and_never_opened(served: tuple[TestClient, Path, list[dict[str, Any]]],
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _, rows = served
    picture = base64.b64decode(rows[0]["picture"])
    named = tmp_path / "abcdPNG0"  # a name that is valid base64 too, and a real image the old reader would read
    named.write_bytes(picture)
    (tmp_path / "x.png").write_bytes(picture)
    monkeypatch.chdir(tmp_path)
    opened: list[str] = []
    for name in ("is_file", "exists", "stat", "read_bytes", "open"):
        real = getattr(pathlib.Path, name)

        def spy(self: Path, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if self.name in ("abcdPNG0", "x.png"):
                opened.append(str(self))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, name, spy)
    for value in ("abcdPNG0", str(named), "x.png", str(tmp_path / "x.png"), "file://" + str(named)):
        r = _predict(client, [rows[0], dict(rows[1], picture=value)])
        assert r.status_code == 422, (value, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, list) and detail[0]["loc"] == ["body", "rows", 1, "picture"], detail
        assert detail[0]["msg"].startswith("row 1: field 'picture' (image, base64 of a PNG/JPEG/WebP"), detail
    assert opened == []


def test_encoder_in_base64_mode_never_reads_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    column = ImageColumn("picture", "picture", 0, channels=1, size=(8, 8))
    (tmp_path / "abcdPNG0").write_bytes(png(np.random.default_rng(0), 0))
    table = pa.table({"picture": ["abcdPNG0"]})
    assert not Problems().rows
    problems = Problems()
    column.read(table, tmp_path, problems)
    assert not problems.rows  # reading files: the path is read
    column.read_paths = False
    problems = Problems()
    monkeypatch.setattr(pathlib.Path, "is_file", lambda self: pytest.fail(f"touched {self}"))
    column.read(table, tmp_path, problems)
    assert problems.rows and "not an image" in problems.reasons[0]


def test_bad_values_name_row_and_field(served: tuple[TestClient, Path, list[dict[str, Any]]]) -> None:
    client, _, rows = served
    big = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)).save(big, format="PNG")
    truncated = base64.b64decode(rows[0]["picture"])[:40]
    cases = {
        "not base64": (dict(rows[1], picture="not base64!"), "picture", "not valid base64"),
        "not an image": (dict(rows[1], picture=base64.b64encode(b"hello, this is text" * 5).decode()), "picture",
                         "not a PNG/JPEG/WebP image"),
        "a png for the sound": (dict(rows[1], sound=rows[1]["picture"]), "sound", "not a WAV or FLAC file"),
        "oversize": (dict(rows[1], picture=base64.b64encode(big.getvalue()).decode()), "picture",
                     f"over the limit of {MAX_MEDIA:,} bytes"),
        "null": (dict(rows[1], picture=None), "picture", "must be base64 of a PNG/JPEG/WebP"),
    }
    for case, (row, field, words) in cases.items():
        r = _predict(client, [rows[0], row])
        assert r.status_code == 422, (case, r.text)
        detail = r.json()["detail"][0]
        assert detail["loc"] == ["body", "rows", 1, field], (case, detail)
        assert detail["msg"].startswith(f"row 1: field {field!r}") and words in detail["msg"], (case, detail)
    # starts like a PNG but cannot be decoded: the encoder refuses it, naming the row and the field
    r = _predict(client, [rows[0], dict(rows[1], picture=base64.b64encode(truncated).decode())])
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("row 1: field 'picture': a damaged or truncated image"), r.text
    assert "(image feature 'picture')" in detail
