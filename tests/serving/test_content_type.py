"""Refusals at the server's door (issue 23 item 9): a body that is not JSON by its Content-Type is a 415 with a
JSON error, before a byte of it is read; ``shoal serve --port 70000`` is one error line and exit code 2.

Chosen: ``application/json`` and ``application/*+json``, with no charset or UTF-8, are JSON; a missing
Content-Type is read as JSON (clients that send none keep working); anything else, ``curl -d``'s
``application/x-www-form-urlencoded`` included, is a 415.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shoal.cli import main as cli
from shoal.config import parse_config
from shoal.data.synthetic import SynthSpec, generate
from shoal.serving.app import ServeSettings, create_app
from shoal.training.loop import Trainer

with warnings.catch_warnings():  # starlette asks for httpx2 here; the client works the same
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "content-type-token"
NOT_JSON = "is not JSON: send the body as JSON with the header 'Content-Type: application/json'"
REFUSED = ["text/plain", "application/x-www-form-urlencoded", "multipart/mixed; boundary=x", "application/xml",
           "application/jsonx", "text/json", "application/json; charset=latin-1", "*/*"]
ACCEPTED = [None, "application/json", "application/json; charset=utf-8", 'Application/JSON; Charset="UTF-8"',
            "application/vnd.api+json", "application/json;charset=utf8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("content-type") / "clicks.parquet"
    generate(path, SynthSpec(rows=600, dense=2, sparse=4, base_rate=0.3, max_cardinality=50, seed=7))
    return path


@pytest.fixture(scope="module")
def bundle(data: Path) -> Path:
    config = {
        "name": "content-type",
        "data": {"train": str(data), "valid_fraction": 0.2},
        "label": {"column": "label"},
        "features": [{"name": "d0", "kind": "dense"}, {"name": "d1", "kind": "dense"},
                     {"name": "s0", "kind": "sparse", "buckets": 64}, {"name": "s1", "kind": "sparse", "buckets": 64}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [8]},
        "train": {"epochs": 1, "batch_size": 128, "threads": 1, "pictures": False},  # no PNGs: none is read
    }
    return Trainer(parse_config(config, source="test"), data.parent / "run").fit().bundle


@pytest.fixture(scope="module")
def body(data: Path) -> bytes:
    rows = pq.read_table(data).slice(0, 2).select(["d0", "d1", "s0", "s1"]).to_pylist()
    return json.dumps({"rows": rows}).encode()


@pytest.fixture(scope="module")
def client(bundle: Path) -> Iterator[TestClient]:
    with TestClient(create_app(bundle, ServeSettings(admin_token=TOKEN)), raise_server_exceptions=False) as c:
        yield c


def _post(client: TestClient, path: str, body: bytes, content_type: str | None, **headers: str) -> Any:
    if content_type is not None:
        headers["content-type"] = content_type
    return client.post(path, content=body, headers=headers)


def _both_paths(client: TestClient, body: bytes, content_type: str | None) -> list[Any]:
    """The answers of the fast path and of the FastAPI route of POST /predict."""
    fast = _post(client, "/predict", body, content_type)
    app = client.app
    saved, app.fast_predict = app.fast_predict, None  # type: ignore[attr-defined]
    try:
        routed = _post(client, "/predict", body, content_type)
    finally:
        app.fast_predict = saved  # type: ignore[attr-defined]
    return [fast, routed]


@pytest.mark.parametrize("content_type", REFUSED)
def test_predict_refuses_a_body_that_is_not_json_with_415(client: TestClient, body: bytes, content_type: str) -> None:
    for r in _both_paths(client, body, content_type):
        assert r.status_code == 415, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"detail": f"Content-Type {content_type!r} {NOT_JSON} (charset utf-8, or none)"}


@pytest.mark.parametrize("content_type", ACCEPTED)
def test_predict_accepts_json_and_a_missing_content_type(client: TestClient, body: bytes,
                                                         content_type: str | None) -> None:
    for r in _both_paths(client, body, content_type):
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"]) == 2


def test_415_is_answered_before_the_body_is_read_and_closes_the_connection(client: TestClient) -> None:
    received = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"x" * 65_536, "more_body": True}  # a body without end

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [
        (b"content-type", b"text/plain"), (b"content-length", b"300000000")]}
    asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
    assert received == 0
    assert sent[0]["status"] == 415 and (b"connection", b"close") in sent[0]["headers"]
    assert NOT_JSON in json.loads(sent[1]["body"])["detail"]


def test_admin_reload_refuses_a_body_that_is_not_json_after_the_token(client: TestClient, bundle: Path) -> None:
    ref = json.dumps({"ref": str(bundle)}).encode()
    assert _post(client, "/admin/reload", ref, "text/plain").status_code == 401  # the token is checked first
    auth = {"authorization": f"Bearer {TOKEN}"}
    r = _post(client, "/admin/reload", ref, "application/x-www-form-urlencoded", **auth)
    assert r.status_code == 415 and NOT_JSON in r.json()["detail"]
    assert _post(client, "/admin/reload", ref, "application/json", **auth).status_code == 200
    assert _post(client, "/admin/reload", b"", None, **auth).status_code == 200


def test_the_spec_lists_415(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "415" in spec["paths"]["/predict"]["post"]["responses"]
    assert "415" in spec["paths"]["/admin/reload"]["post"]["responses"]


# -- shoal serve --port ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["70000", "65536", "-1"])
def test_serve_refuses_a_port_out_of_range_in_one_line(port: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["serve", "latest", "--port", port, "--home", str(tmp_path)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.output == f"error: --port {port}: a TCP port is 0 to 65535 (0: a free port the system picks)\n"


@pytest.mark.parametrize("port", ["0", "65535"])
def test_serve_accepts_the_ports_at_the_ends_of_the_range(port: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["serve", "nosuchrun", "--port", port, "--home", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "--port" not in result.output and "nosuchrun" in result.output  # past the port: the run is looked up


def test_serve_names_a_bad_option_in_one_line_and_never_echoes_the_token(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["serve", "latest", "--workers", "0", "--home", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output == "error: --workers 0: Input should be greater than or equal to 1\n"
    result = CliRunner().invoke(cli.app, ["serve", "latest", "--admin-token", "secret", "--home", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output == "error: --admin-token: String should have at least 8 characters\n"
