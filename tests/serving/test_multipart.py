"""``POST /predict`` as ``multipart/form-data`` (issue 20 item 4): one row, a file part per media field, a text
part per other field. The answers equal the JSON body's with the same values as base64; the same 422 messages;
every malformed body is a 4xx naming what is wrong, never a 500; the body limits hold as for JSON."""

from __future__ import annotations

import asyncio
import base64
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoal.config import parse_config
from shoal.serving import fairness
from shoal.serving.app import ServeSettings, create_app
from tests.serving.conftest import png, wav

with warnings.catch_warnings():  # starlette asks for httpx2 here; the client works the same
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROWS = 12
MAX_MEDIA = 2048  # bytes: the test images and sounds are under it
BOUNDARY = "shoal-test-boundary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny multiclass bundle reading an image, a sound, an id and a number."""
    import shoal

    root = tmp_path_factory.mktemp("multipart")
    rng = np.random.default_rng(0)
    table = pa.table({"picture": pa.array([png(rng, i % 3) for i in range(ROWS)], pa.binary()),
                      "sound": pa.array([wav(i % 3) for i in range(ROWS)], pa.binary()),
                      "shop": [f"s{i % 4}" for i in range(ROWS)], "price": rng.random(ROWS).round(3),
                      "kind": ["abc"[i % 3] for i in range(ROWS)]})
    pq.write_table(table, root / "rows.parquet")
    cfg = parse_config({
        "name": "multipart", "data": {"train": str(root / "rows.parquet"), "valid_fraction": 0.25},
        "label": {"column": "kind", "kind": "multiclass"},
        "features": [{"name": "picture", "kind": "image", "channels": 1, "size": [8, 8], "widths": [4]},
                     {"name": "sound", "kind": "audio", "sample_rate": 4000, "seconds": 0.1, "n_mels": 8,
                      "window_ms": 16, "hop_ms": 8, "widths": [4]},
                     {"name": "shop", "kind": "sparse", "buckets": 16}, {"name": "price", "kind": "dense"}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [8]},
        "train": {"epochs": 1, "batch_size": 16, "pictures": False, "threads": 1},
    })
    return Path(shoal.train(cfg, home=root / "runs").artifact_dir) / "bundle"


@pytest.fixture(scope="module")
def client(bundle: Path) -> Iterator[TestClient]:
    settings = ServeSettings(max_media_bytes=MAX_MEDIA, max_body_bytes=8192, backend="torch")
    with TestClient(create_app(bundle, settings, home=bundle.parent), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def row() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    return {"picture": png(rng, 1), "sound": wav(1), "shop": "s2", "price": 0.25}


def _form(parts: list[tuple[str, bytes]], boundary: str = BOUNDARY, close: bool = True) -> bytes:
    """A multipart body by hand (so that it can be broken): (name, bytes) per part; a name "" has none."""
    out = b""
    for name, data in parts:
        disposition = f'form-data; name="{name}"; filename="{name}.bin"' if name else "form-data"
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + (f"--{boundary}--\r\n".encode() if close else b"")


def _row_parts(row: dict[str, Any], **changed: bytes) -> list[tuple[str, bytes]]:
    values = {"picture": row["picture"], "sound": row["sound"], "shop": row["shop"].encode(),
              "price": str(row["price"]).encode(), **changed}
    return list(values.items())


def _post_form(client: TestClient, body: bytes, content_type: str = FORM) -> Any:
    return client.post("/predict", content=body, headers={"content-type": content_type})


def _json_row(row: dict[str, Any], **changed: Any) -> dict[str, Any]:
    return {**row, "picture": base64.b64encode(row["picture"]).decode(),
            "sound": base64.b64encode(row["sound"]).decode(), **changed}


def _probabilities(answer: Any) -> list[float]:
    assert answer.status_code == 200, answer.text
    return [answer.json()["predictions"][0]["probabilities"][c] for c in "abc"]


def test_an_upload_answers_as_the_same_row_in_base64_json(client: TestClient, row: dict[str, Any]) -> None:
    want = client.post("/predict", json={"rows": [_json_row(row)]})
    got = client.post("/predict", files={"picture": ("digit.png", row["picture"], "image/png"),
                                         "sound": ("tone.wav", row["sound"], "audio/wav")},
                      data={"shop": row["shop"], "price": str(row["price"])})
    np.testing.assert_allclose(_probabilities(got), _probabilities(want), atol=1e-6)
    assert set(got.json()) == {"model", "version", "predictions"}
    assert set(got.json()["predictions"][0]) == {"class", "probabilities"}
    app = client.app
    saved, app.fast_predict = app.fast_predict, None  # type: ignore[attr-defined]
    try:  # the FastAPI route of /predict answers the same
        routed = _post_form(client, _form(_row_parts(row)))
    finally:
        app.fast_predict = saved  # type: ignore[attr-defined]
    np.testing.assert_allclose(_probabilities(routed), _probabilities(want), atol=1e-6)


def test_text_fields_are_read_as_json_values(client: TestClient, row: dict[str, Any]) -> None:
    cases = [({"price": b"2.5e-1"}, {"price": 0.25}), ({"price": b"3"}, {"price": 3.0}),
             ({"price": b""}, {"price": None}), ({"price": b"null"}, {"price": None}),
             ({"shop": b""}, {"shop": None}), ({"shop": b"17"}, {"shop": "17"})]
    for form, json_row in cases:
        got = _post_form(client, _form(_row_parts(row, **form)))
        want = client.post("/predict", json={"rows": [_json_row(row, **json_row)]})
        np.testing.assert_allclose(_probabilities(got), _probabilities(want), atol=1e-6, err_msg=str(form))


def test_bad_fields_get_the_json_bodys_422(client: TestClient, row: dict[str, Any]) -> None:
    parts = _row_parts(row)
    cases = {  # the form's parts -> the JSON row with the same fault
        "not a number": (_row_parts(row, price=b"abc"), _json_row(row, price="abc")),
        "infinite": (_row_parts(row, price=b"1e999"), _json_row(row, price=float("inf"))),
        "unknown field": ([*parts, ("colour", b"red")], {**_json_row(row), "colour": "red"}),
        "missing field": (parts[:3], {k: v for k, v in _json_row(row).items() if k != "price"}),
    }
    for case, (form, json_row) in cases.items():
        got = _post_form(client, _form(form))
        want = client.post("/predict", content=json.dumps({"rows": [json_row]}, allow_nan=True),
                           headers={"content-type": "application/json"})
        assert got.status_code == want.status_code == 422, (case, got.text, want.text)
        assert got.json() == want.json(), case
    detail = _post_form(client, _form(_row_parts(row, price=b"abc"))).json()["detail"]
    assert detail == [{"loc": ["body", "rows", 0, "price"], "type": "float_type",
                       "msg": "field 'price' (dense) must be a number or null, not 'abc'"}]
    detail = _post_form(client, _form([*parts, ("colour", b"red")])).json()["detail"]
    assert detail[0]["msg"] == "unknown field 'colour'; this model's fields are: picture, sound, shop, price"


def test_a_corrupt_or_wrong_file_is_a_422_naming_the_field(client: TestClient, row: dict[str, Any]) -> None:
    r = _post_form(client, _form(_row_parts(row, picture=row["picture"][:40])))  # starts like a PNG, truncated
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("row 0: field 'picture': a damaged or truncated image"), r.text
    r = _post_form(client, _form(_row_parts(row, sound=b"hello, this is text")))
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{
        "loc": ["body", "rows", 0, "sound"], "type": "value_error",
        "msg": "row 0: field 'sound' (audio, base64 of a WAV or FLAC file): the file is 19 bytes starting "
               "b'hello, this ', not a WAV or FLAC file"}]


def test_size_limits_are_413(client: TestClient, row: dict[str, Any]) -> None:
    r = _post_form(client, _form(_row_parts(row, picture=row["picture"] + b"\0" * MAX_MEDIA)))
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == ("part 'picture' is over the limit of 2,048 bytes for one media value "
                                  "(max_media_bytes); send a smaller file")
    r = _post_form(client, _form([(f"f{i}", b"1") for i in range(13)]))  # 4 fields + 8 spare parts
    assert r.status_code == 413, r.text
    assert r.json()["detail"].startswith("multipart/form-data body of over 12 parts is over the limit of 12")
    r = _post_form(client, _form([(f"f{i}", b"1") for i in range(12)]))  # as many: the unknown ones are named
    assert r.status_code == 422 and "unknown field 'f0'" in r.text, r.text
    r = _post_form(client, _form([("picture", b"x" * 9000)]))
    assert r.status_code == 413, r.text
    assert "over the limit of 8,192 bytes (max_body_bytes)" in r.json()["detail"]


def test_malformed_bodies_are_4xx_naming_the_fault(client: TestClient, row: dict[str, Any]) -> None:
    whole = _form(_row_parts(row))
    cases = {
        "no closing boundary": (_form(_row_parts(row), close=False), 400, "ends before its closing boundary"),
        "cut in a part": (whole[: len(whole) // 2], 400, "ends before its closing boundary"),
        "another boundary": (_form(_row_parts(row), boundary="other"), 400, "malformed multipart/form-data body"),
        "not multipart": (b'{"rows": []}', 400, "malformed multipart/form-data body"),
        "empty": (b"", 400, "ends before its closing boundary"),
        "a part without a name": (_form([*_row_parts(row)[:3], ("", b"1")]), 400, "part 4 of the multipart"),
        "a field twice": (_form([*_row_parts(row), ("shop", b"s1")]), 422, "field 'shop' is sent twice"),
    }
    for case, (body, status, words) in cases.items():
        r = _post_form(client, body)
        assert r.status_code == status and words in r.json()["detail"], (case, r.text)


def test_a_missing_boundary_is_a_400_before_the_body_is_read(client: TestClient) -> None:
    received = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"x" * 65_536, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for content_type in (b"multipart/form-data", b"multipart/form-data; boundary=", b"multipart/form-data; b=x",
                         b"multipart/form-data; boundary=" + b"x" * 71):
        sent.clear()
        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"content-type", content_type)]}
        asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
        assert received == 0
        assert sent[0]["status"] == 400 and (b"connection", b"close") in sent[0]["headers"]
        assert json.loads(sent[1]["body"])["detail"].startswith("Content-Type multipart/form-data has"), sent[1]


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/mixed; boundary=x",
                                          "application/x-www-form-urlencoded"])
def test_other_content_types_are_still_415(client: TestClient, content_type: str) -> None:
    r = _post_form(client, b"x=1", content_type)
    assert r.status_code == 415 and "is not JSON" in r.json()["detail"], r.text


def test_the_spec_describes_the_form(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"] == {"$ref": "#/components/schemas/PredictForm"}
    form = spec["components"]["schemas"]["PredictForm"]
    assert form["required"] == ["picture", "sound", "shop", "price"]
    assert form["properties"]["picture"]["format"] == "binary" and "format" not in form["properties"]["price"]


def test_the_byte_budget_and_the_body_deadline_hold(bundle: Path, row: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fairness, "MAX_HOLD_S", 0.01)  # a client in debt is answered 429 at once
    settings = ServeSettings(max_media_bytes=MAX_MEDIA, backend="torch", client_bytes_rate=1.0,
                             client_bytes_burst=1024, body_timeout_s=0.2, client_key="ip")
    body = _form(_row_parts(row))
    with TestClient(create_app(bundle, settings, home=bundle.parent)) as client:
        assert _post_form(client, body).status_code == 200  # the bucket had tokens: in debt by the body's size
        r = _post_form(client, body)
        assert r.status_code == 429 and "client_bytes_rate" in r.json()["detail"], r.text
        sent: list[dict[str, Any]] = []

        async def stalled() -> dict[str, Any]:
            if not sent:
                sent.append({})
                return {"type": "http.request", "body": body[:100], "more_body": True}
            await asyncio.sleep(60)
            raise AssertionError("the body deadline did not hold")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/predict", "client": ("10.0.0.9", 1),
                 "headers": [(b"content-type", FORM.encode())]}
        asyncio.run(client.app(scope, stalled, send))  # type: ignore[arg-type]
        assert sent[1]["status"] == 408, sent
        assert "body_timeout_s" in json.loads(sent[2]["body"])["detail"]
