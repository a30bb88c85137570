"""Time features in the raw graph (shoal.export.raw_time): the caller's instants (and a zone's offsets) in, the
encoder's calendar ids and ages out, exactly; a bundle with time features exports, serves and answers as PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.artifacts.bundle import load_bundle, save_bundle
from shoal.config import parse_config
from shoal.data.encoder import Encoder
from shoal.data.features.time import MAX_SECONDS, MIN_SECONDS
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
from shoal.export.raw_runtime import raw_graph_refusal
from shoal.export.raw_time import MISSING_INSTANT
from shoal.models import build

ALL = ["hour", "weekday", "day", "month"]
TIMES: list[dict[str, Any]] = [
    {"name": "ts", "kind": "time", "parts": ALL},
    {"name": "paris", "kind": "time", "timezone": "Europe/Paris", "parts": ALL, "relative_to": "ts"},
    {"name": "shop", "kind": "time", "format": "%d/%m/%Y %H:%M", "timezone": "America/New_York",
     "parts": ["hour", "day"]},
    {"name": "first_seen", "kind": "time", "relative_to": "ts", "parts": []},
]


def _encoder(features: list[dict[str, Any]], fit_rows: int = 300) -> Encoder:
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"}, "features": features,
                        "model": {"name": "mlp", "hidden": [8]}})
    encoder = Encoder(cfg.features, cfg.label)
    encoder.fit([Chunk(synthetic_raw_rows(encoder, fit_rows, seed=5), np.arange(1, fit_rows + 1), "fit")],
                BadRowSink("error"))
    return encoder


def _graph_and_encoder(encoder: Encoder, table: pa.Table) -> tuple[list[np.ndarray], Any]:
    """(the graph's dense block and single ids, the encoder's batch) for ``table``."""
    session = ort.InferenceSession(preprocess_model(encoder).SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["raw/out/dense", "raw/out/single_ids"], raw_feed(table, raw_contract(encoder)))
    batch = encoder.encode(Chunk(table, np.arange(1, table.num_rows + 1), "rows"), BadRowSink("error"),
                           with_label=False)
    return got, batch


def test_the_ids_and_ages_are_the_encoders() -> None:
    """Synthetic cells of every kind (ISO with Z, with an offset, local, dates, epoch seconds and milliseconds, a
    strptime format, missing), times from 1901 to 2099 around midnights and daylight-saving changes, a zone with
    DST and one without a zone: the calendar ids equal the encoder's, the ages to float32 rounding."""
    encoder = _encoder(TIMES)
    table = synthetic_raw_rows(encoder, 2000, seed=11)
    (dense, ids), batch = _graph_and_encoder(encoder, table)
    np.testing.assert_array_equal(ids, np.stack(batch.ids, axis=1))
    np.testing.assert_allclose(dense, batch.dense, rtol=1e-6, atol=1e-6)
    assert (ids == 0).any() and (ids > 0).all(axis=1).any()  # missing times and present ones were both checked
    assert sorted(np.unique(ids[:, 3])) == list(range(0, 13))  # every month (and missing) came up


def test_known_instants_by_hand() -> None:
    """08:30Z on Friday 1 March 2024 is 09:30 in Paris (winter), 1 July 00:30 in Paris is 30 June 22:30Z; 1 Jan
    1900 was a Monday; the day before 1970 in UTC."""
    encoder = _encoder(TIMES[:2])
    rows = [{"ts": "2024-03-01T08:30:00Z", "paris": "2024-03-01T08:30:00Z"},
            {"ts": "2024-06-30T22:30:00Z", "paris": "2024-07-01 00:30"},
            {"ts": "1900-01-01", "paris": None},
            {"ts": "-1", "paris": ""}]
    (dense, ids), _ = _graph_and_encoder(encoder, pa.Table.from_pylist(rows))
    # ts then paris: hour + 1, weekday + 1 (Monday 1), day, month (January 1); 0: missing
    assert ids.tolist() == [[9, 5, 1, 3, 10, 5, 1, 3],
                            [23, 7, 30, 6, 1, 1, 1, 7],
                            [1, 1, 1, 1, 0, 0, 0, 0],
                            [24, 3, 31, 12, 0, 0, 0, 0]]
    assert dense[:, 1].tolist() == [0.0, 0.0, 1.0, 1.0]  # paris's age: its missing flag
    contract = raw_contract(encoder)
    feed = raw_feed(rows, contract)
    assert feed["ts.instant"].tolist() == [1_709_281_800_000_000, 1_719_786_600_000_000, -2_208_988_800_000_000,
                                           -1_000_000]
    assert feed["paris.offset"].tolist() == [3600, 7200, 0, 0] and feed["paris.instant"][2] == MISSING_INSTANT
    assert "ts.offset" not in contract["inputs"] and contract["version"] == 4
    assert contract["inputs"]["ts.instant"]["missing"] == MISSING_INSTANT


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(MIN_SECONDS, MAX_SECONDS), min_size=1, max_size=20),
       st.sampled_from(["UTC", "Europe/Paris", "Australia/Lord_Howe", "America/St_Johns", "Asia/Kathmandu"]))
def test_property_any_instant_of_the_years_1_to_9999(seconds: list[int], zone: str) -> None:
    """Any epoch second from 0001-01-01 to 9999-12-31, in zones with half-hour, 45-minute and 30-minute DST
    offsets: the graph's calendar ids are pyarrow's."""
    encoder = _ENCODERS.get(zone) or _ENCODERS.setdefault(
        zone, _encoder([{"name": "t", "kind": "time", "timezone": zone, "parts": ALL}], fit_rows=8))
    (_, ids), batch = _graph_and_encoder(encoder, pa.table({"t": [str(s) for s in seconds]}))
    np.testing.assert_array_equal(ids, np.stack(batch.ids, axis=1))


_ENCODERS: dict[str, Encoder] = {}


def test_a_bundle_with_times_exports_serves_and_refuses_bad_times(tmp_path: Path) -> None:
    features = [*TIMES, {"name": "price", "kind": "dense", "transform": "log1p", "bins": 4},
                {"name": "user", "kind": "sparse", "buckets": 40}]
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"}, "features": features,
                        "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]}})
    encoder = Encoder(cfg.features, cfg.label)
    encoder.fit([Chunk(synthetic_raw_rows(encoder, 300, seed=5), np.arange(1, 301), "fit")], BadRowSink("error"))
    torch.manual_seed(0)
    net = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots).eval()
    for p in net.parameters():  # weights large enough that a wrong id or age moves the probability
        torch.nn.init.normal_(p, std=0.5)
    save_bundle(tmp_path / "bundle", net, encoder, cfg, {"train_base_rate": 0.3})
    report = export_raw_onnx(tmp_path / "bundle", parity_rows=256)
    assert report.max_abs_proba_diff <= 1e-5
    bundle = load_bundle(tmp_path / "bundle")
    model = RawOnnxModel(report.path)
    table = synthetic_raw_rows(encoder, 64, seed=9)
    assert parity(bundle, model, table) <= 1e-5
    assert raw_graph_refusal(bundle, tmp_path / "bundle") is None  # serving takes the raw graph
    row = table.slice(0, 1).to_pylist()[0] | {"ts": 1_709_281_800}  # a JSON number: epoch seconds
    one = model.predict_proba([row])
    assert one.shape == (1,) and 0 < one[0] < 1
    with pytest.raises(ValueError, match=r"row 0, column 'ts': not a time .* \(value 'next tuesday'\)"):
        model.predict_proba([row | {"ts": "next tuesday"}])
    with pytest.raises(ValueError, match=r"row 0, column 'shop': does not match format"):
        model.predict_proba([row | {"shop": "2024-03-01"}])
