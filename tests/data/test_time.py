"""Time features (``kind: time``): reading (ISO 8601, epoch numbers, Arrow types), calendar parts in a time zone,
the relative age, bad cells, the saved form, config errors, inspect, and one planted effect end to end."""

from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shoal.cli import main as cli
from shoal.config import ConfigError, FeatureConfig, LabelConfig, load_config, parse_config
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.inspect import inspect_file
from shoal.inspect.starter import starter_config

HOUR, WEEKDAY, DAY, MONTH = 0, 1, 2, 3  # ids positions with parts [hour, weekday, day, month]
ALL = ["hour", "weekday", "day", "month"]


def _encode(features: list[dict[str, Any]], table: pa.Table, fit: bool = True) -> tuple[Encoder, Any, BadRowSink]:
    enc = Encoder([FeatureConfig(**f) for f in features], LabelConfig(column="y"))
    chunk = Chunk(table, np.arange(2, 2 + table.num_rows), "events.csv")
    if fit:
        enc.fit([chunk], BadRowSink("keep"))
    sink = BadRowSink("keep")
    return enc, enc.encode(chunk, sink, with_label=False), sink


def _ids(cells: list[Any], typ: pa.DataType | None = None, **options: Any) -> list[list[int]]:
    """[hour, weekday, day, month] ids of each cell of one time feature."""
    _, batch, sink = _encode([{"name": "t", "kind": "time", "parts": ALL, **options}],
                             pa.table({"t": pa.array(cells, typ)}))
    assert sink.rows == []
    return np.stack(batch.ids, axis=1).tolist()


# -- reading and parts -------------------------------------------------------------------------------------------
def test_iso_text_epoch_numbers_and_arrow_types_read_the_same_instant() -> None:
    # 2024-03-01T08:30:00Z is a Friday: hour 8 -> id 9, weekday 4 -> id 5, day 1 -> id 1, March -> id 3
    friday = [9, 5, 1, 3]
    cells = ["2024-03-01T08:30:00Z", "2024-03-01 08:30:00.250", "2024-03-01T10:30:00+02:00", "2024-03-01T03:30-0500",
             "2024-03-01T08:30", "1709281800", "1709281800000", "1709281800.5", " 2024-03-01T08:30:00z "]
    assert _ids(cells) == [friday] * len(cells)
    assert _ids([1709281800, 1709281800000, None]) == [friday, friday, [0, 0, 0, 0]]  # int64: s, ms; null missing
    assert _ids([1709281800.0], pa.float64(), unit="s") == [friday]
    assert _ids(["2024-03-01"]) == [[1, 5, 1, 3]]  # a date: midnight
    assert _ids(["", None]) == [[0, 0, 0, 0]] * 2  # missing
    ts = pa.array([1709281800], pa.timestamp("s", tz="UTC"))
    assert _ids(ts.to_pylist(), pa.timestamp("ms", tz="UTC")) == [friday]
    assert _ids([datetime.datetime(2024, 3, 1, 8, 30)], pa.timestamp("us")) == [friday]  # naive: local (UTC)
    assert _ids([datetime.date(2024, 3, 1)], pa.date32()) == [[1, 5, 1, 3]]
    assert _ids(["01/03/2024 08h30"], format="%d/%m/%Y %Hh%M") == [friday]
    assert _ids(["1709281800"], unit="ms") == [[19, 2, 20, 1]]  # 1970-01-20T18:48Z, a Tuesday


def test_parts_are_local_time_of_the_timezone_with_daylight_saving() -> None:
    ny = {"timezone": "America/New_York"}
    # noon UTC is 08:00 EDT in July (UTC-4) and 07:00 EST in January (UTC-5)
    assert [r[HOUR] for r in _ids(["2024-07-01T12:00:00Z", "2024-01-15T12:00:00Z"], **ny)] == [9, 8]
    # text without an offset is New York's wall time: its hour is the hour written
    assert [r[HOUR] for r in _ids(["2024-07-01T08:00", "2024-01-15T08:00"], **ny)] == [9, 9]
    # 23:30 UTC on Sunday 30 June is still Sunday in UTC, 19:30 in New York; Monday 00:30 in Tokyo (UTC+9: 08:30)
    assert _ids(["2024-06-30T23:30:00Z"])[0][:2] == [24, 7]
    assert _ids(["2024-06-30T23:30:00Z"], timezone="Asia/Tokyo")[0][:2] == [9, 1]
    # the UTC default has no daylight saving: 02:30 on New York's spring-forward night is just 02:30
    assert _ids(["2024-03-10T02:30"])[0][HOUR] == 3
    assert _ids(["2024-03-10T02:30"], **ny)[0][HOUR] == 4  # skipped in New York: the first instant after, 03:00


def test_bad_cells_are_bad_rows_with_file_line_column_and_value() -> None:
    table = pa.table({"t": ["2024-03-01T08:30:00Z", "yesterday", "2024-02-30", "1e400", "99999999999999999", ""]})
    enc, batch, sink = _encode([{"name": "t", "kind": "time"}], table)
    assert [(r.file, r.line, r.column, r.value) for r in sink.rows] == [
        ("events.csv", 3, "t", "yesterday"), ("events.csv", 4, "t", "2024-02-30"), ("events.csv", 5, "t", "1e400"),
        ("events.csv", 6, "t", "99999999999999999")]
    assert sink.rows[0].reason.startswith("not a time (time feature): expected ISO 8601")
    assert sink.rows[2].reason == "infinite value (time feature)"
    assert sink.rows[3].reason == ("a time outside the years 1 to 9999 (time feature; epoch seconds, or milliseconds "
                                   "from 1e11)")
    assert batch.lines.tolist() == [2, 7] and [i.tolist() for i in batch.ids] == [[9, 0], [5, 0]]
    _, _, sink = _encode([{"name": "t", "kind": "time", "format": "%d/%m/%Y"}], pa.table({"t": ["2024-03-01"]}))
    assert [(r.line, r.reason) for r in sink.rows] == [(2, "does not match format '%d/%m/%Y' (time feature)")]


# -- the relative age and the batch layout ------------------------------------------------------------------------
def test_age_relative_to_the_row_time_is_a_standardized_dense_value_with_a_missing_flag() -> None:
    table = pa.table({"d": ["1", "2", "3", "4"],
                      "ts": ["2024-03-11T00:00:00Z", "2024-03-11T00:00:00Z", "2024-03-11T00:00:00Z", ""],
                      "signup": ["2024-03-01", "2024-03-12", None, "2024-03-01"],
                      "s": ["a", "b", "c", "d"]})
    features = [{"name": "d", "kind": "dense", "transform": "none"},
                {"name": "ts", "kind": "time"},
                {"name": "signup", "kind": "time", "relative_to": "ts", "parts": ["month"]},
                {"name": "s", "kind": "sparse", "buckets": 16}]
    enc, batch, sink = _encode(features, table)
    assert sink.rows == []
    # ids: sparse, then each time feature's parts; dense: [d | signup age | d missing | signup age missing]
    assert enc.buckets == [16, 25, 8, 13] and enc.dense_dim == 4
    signup = enc.time_features[1]
    ages = np.array([10.0, -1.0])  # ts - signup in days
    logs = np.sign(ages) * np.log1p(np.abs(ages))
    assert signup.mean_ == pytest.approx(logs.mean()) and signup.std_ == pytest.approx(logs.std())
    np.testing.assert_allclose(batch.dense[:, 1], [*(logs - logs.mean()) / logs.std(), 0, 0], rtol=1e-6)
    assert batch.dense[:, 3].tolist() == [0, 0, 1, 1]  # signup missing, ts missing
    assert batch.dense[:, 0].tolist() == [1, 2, 3, 4] and batch.dense[:, 2].tolist() == [0, 0, 0, 0]
    assert [i.tolist() for i in batch.ids[1:]] == [[1, 1, 1, 0], [1, 1, 1, 0], [3, 3, 0, 3]]


def test_the_encoder_json_round_trip_keeps_the_options_and_the_fitted_age() -> None:
    table = pa.table({"ts": ["2024-03-11T09:00:00", "2024-05-01T18:15:00"], "signup": ["2023-03-01", "2024-04-01"]})
    features = [{"name": "ts", "kind": "time", "timezone": "Europe/Paris", "parts": ["hour", "month"]},
                {"name": "signup", "kind": "time", "relative_to": "ts", "parts": [], "unit": "ms"}]
    enc, batch, _ = _encode(features, table)
    saved = json.loads(json.dumps(enc.to_dict()))
    assert {k: saved["features"][1][k] for k in ("kind", "parts", "relative_to", "unit", "timezone")} == {
        "kind": "time", "parts": [], "relative_to": "ts", "unit": "ms", "timezone": "UTC"}
    back = Encoder.from_dict(saved)
    again = back.encode(Chunk(table, np.arange(2, 4), "events.csv"), BadRowSink("error"), with_label=False)
    np.testing.assert_array_equal(again.dense, batch.dense)
    assert [i.tolist() for i in again.ids] == [i.tolist() for i in batch.ids] == [[10, 19], [3, 5]]
    assert back.to_dict() == saved


# -- config errors ---------------------------------------------------------------------------------------------------
def _config(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": {"train": "x.csv"}, "label": {"column": "y"}, "features": features, "model": {"name": "mlp"}}


@pytest.mark.parametrize(("features", "message"), [
    ([{"name": "ts", "kind": "time"}, {"name": "a", "kind": "time", "relative_to": "t"}],
     "feature 'a': relative_to must name another time feature, and there is no feature 't'; the time features "
     "are: 'ts'"),
    ([{"name": "d", "kind": "dense"}, {"name": "a", "kind": "time", "relative_to": "d"}],
     "feature 'a': relative_to must name another time feature, and 'd' is a dense feature; the time features are: "
     "none"),
    ([{"name": "a", "kind": "time", "relative_to": "a"}],
     "feature 'a': relative_to names the feature itself; name another time feature (the row's time, e.g. the "
     "event's timestamp)"),
    ([{"name": "a", "kind": "time", "timezone": "Mars/Base"}],
     "feature 'a': timezone 'Mars/Base' is not a known IANA time zone; use a name such as UTC, Europe/Paris or "
     "America/New_York"),
    ([{"name": "a", "kind": "time", "parts": ["hour", "hour"]}],
     "feature 'a': parts ['hour', 'hour'] lists a part twice; choose each of hour, weekday, day, month at most once"),
    ([{"name": "a", "kind": "time", "parts": []}],
     "feature 'a' encodes nothing: parts is empty, it has no relative_to and no feature is relative to it; give it "
     "parts (e.g. [hour, weekday]) or remove it"),
    ([{"name": "a", "kind": "time", "format": "dd/mm"}],
     "feature 'a': format 'dd/mm' has no % directive; give a strptime format such as '%d/%m/%Y %H:%M', or leave it "
     "out for ISO 8601"),
    ([{"name": "a", "kind": "time", "buckets": 10}], "feature 'a': buckets applies to sparse and text features only "
     "(this one is time)"),
])
def test_config_errors_name_the_feature_and_the_fix(features: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(features), source="c.yaml")
    assert message in str(err.value)


def test_a_time_used_only_as_the_row_time_may_have_no_parts() -> None:
    cfg = parse_config(_config([{"name": "ts", "kind": "time", "parts": []},
                                {"name": "signup", "kind": "time", "relative_to": "ts"}]), source="c.yaml")
    assert [f.kind for f in cfg.features] == ["time", "time"] and cfg.features[0].parts == []  # type: ignore[union-attr]


# -- inspect -----------------------------------------------------------------------------------------------------------
def test_inspect_proposes_time_for_iso_text_timestamps_and_epochs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    base = np.datetime64("2024-03-01T00:00:00", "s")
    ts = base + rng.integers(0, 30 * 86400, n).astype("timedelta64[s]")
    table = pa.table({
        "ts": pa.array(ts.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
        "signup": [str(d)[:10] for d in ts - rng.integers(86400, 400 * 86400, n).astype("timedelta64[s]")],
        "created_at": (ts.astype(np.int64) - 3600).tolist(),
        "seen": [str(t).replace("T", " ") + "Z" for t in ts],
        "amount": rng.integers(0, 1_000_000_000, n) + 1_000_000_000,  # epoch-sized, not named like a time
        "label": rng.integers(0, 2, n)})
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    profile = inspect_file(path)
    kinds = {c.name: (c.kind, c.time_parts) for c in profile.columns}
    assert kinds["ts"] == ("time", ("hour", "weekday")) and kinds["signup"] == ("time", ("weekday", "month"))
    assert kinds["created_at"][0] == "time" and kinds["seen"][0] == "time" and kinds["amount"][0] != "time"
    assert "timestamp[us, tz=UTC] column: read as kind time" in profile.column("ts").reason
    assert "ISO 8601 dates (e.g. " in profile.column("signup").reason
    assert "epoch seconds of 2000-2050" in profile.column("created_at").reason
    text = starter_config(profile, tmp_path / "c.yaml")
    assert '- {name: "ts", kind: time}  # timestamp[us, tz=UTC] column' in text
    assert '- {name: "signup", kind: time, parts: [weekday, month], relative_to: "ts"}' in text
    assert "its age in days at ts (the row's time)" in text
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    cfg = load_config(tmp_path / "c.yaml")
    assert [f.name for f in cfg.features if f.kind == "time"] == ["ts", "signup", "created_at", "seen"]


# -- end to end: a planted effect of the hour of day ----------------------------------------------------------------
def _events(path: Path, n: int, seed: int) -> None:
    """Clicks that depend on the hour only: 60% from 18:00 to 23:59 UTC, 10% else; the times as ISO text, epochs."""
    rng = np.random.default_rng(seed)
    seconds = 1_704_067_200 + rng.integers(0, 60 * 86400, n)  # January and February 2024
    hour = (seconds // 3600) % 24
    click = rng.random(n) < np.where(hour >= 18, 0.6, 0.1)
    iso = [str(np.datetime64(int(s), "s")) + "Z" for s in seconds]
    ts = [iso[i] if i % 2 else str(int(seconds[i]) * 1000) for i in range(n)]  # half ISO, half epoch ms
    pq.write_table(pa.table({"ts": ts, "first_seen": [str(np.datetime64(int(s) - 86400 * 30, "s")) for s in seconds],
                             "click": click.astype(np.int64)}), path)


def test_a_planted_hour_of_day_effect_is_learned_and_predicted_served_and_exported(tmp_path: Path) -> None:
    from shoal.artifacts.bundle import load_bundle
    from shoal.export.onnx import export_onnx
    from shoal.export.raw import export_raw_onnx
    from shoal.export.raw_runtime import raw_graph_refusal
    from shoal.metrics import auc
    from shoal.serving.app import ServeSettings, create_app
    from shoal.training.loop import Trainer

    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    _events(train, 3000, 0)
    _events(test, 400, 1)
    cfg = parse_config({
        "data": {"train": str(train), "valid_fraction": 0.2},
        "label": {"column": "click"},
        "features": [{"name": "ts", "kind": "time"},
                     {"name": "first_seen", "kind": "time", "relative_to": "ts", "parts": []}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [8]},
        "train": {"epochs": 4, "batch_size": 64, "lr": 0.01, "embedding_lr": 0.2, "seed": 0, "threads": 1,
                  "pictures": False}}, source="test")
    bundle = Trainer(cfg, tmp_path / "run").fit().bundle

    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(cli.app, ["predict", str(bundle), str(test), "-o", str(out)])
    assert result.exit_code == 0, result.output
    scored = pq.read_table(out).column("probability").to_numpy()
    labels = pq.read_table(test).column("click").to_numpy()
    assert auc(labels, scored) > 0.7  # the Bayes AUC of the planted effect is about 0.77
    result = CliRunner().invoke(cli.app, ["eval", str(bundle), "--data", str(test), "--home", str(tmp_path / "h")])
    assert result.exit_code == 0 and "auc" in result.output.lower(), result.output

    rows = pq.read_table(test).slice(0, 8).drop(["click"]).to_pylist()
    rows[0]["ts"] = int(rows[0]["ts"]) if rows[0]["ts"].isdigit() else rows[0]["ts"]  # a JSON number works too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    with TestClient(create_app(bundle, ServeSettings(backend="torch"))) as client:
        answer = client.post("/predict", json={"rows": rows})
        assert answer.status_code == 200, answer.text
        served = [p["probability"] for p in answer.json()["predictions"]]
        np.testing.assert_allclose(served, scored[:8], atol=1e-6)
        bad = client.post("/predict", json={"rows": [{**rows[1], "ts": "next tuesday"}]})
        assert bad.status_code == 422
        assert ("field 'ts': 'next tuesday' is not a time; send an ISO 8601 time (2024-03-01T08:30:00Z), epoch "
                "seconds or milliseconds, or null") in bad.text, bad.text
        far = client.post("/predict", json={"rows": [{**rows[1], "first_seen": 1e20}]})
        assert far.status_code == 422
        assert ("field 'first_seen': 1e+20 is not a time: a time outside the years 1 to 9999 (epoch seconds, or "
                "milliseconds from 1e11)") in far.text, far.text
        fields = {f["name"]: f["kind"] for f in client.get("/model").json()["fields"]}
        assert fields == {"ts": "time", "first_seen": "time"}

    report = export_onnx(bundle)  # encoded inputs: parity checked inside (raises past the tolerance)
    assert report.parity["fp32"]["max_abs_proba_diff"] < 1e-5
    raw = export_raw_onnx(bundle)  # the times read by the caller, their calendar ids and ages in the graph
    assert raw.max_abs_proba_diff < 1e-5 and raw.own_rows_diff < 1e-5
    assert raw_graph_refusal(load_bundle(bundle), bundle) is None
