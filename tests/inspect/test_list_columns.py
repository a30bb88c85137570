"""A list column of a JSON-lines or Parquet file (``["a", "b"]``, strings or integers) is a list feature: inspect
proposes it, training reads it as the cell ``"a|b"`` is, and the server takes the same ids as a JSON array."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shoal.cli import main as cli
from shoal.config import load_config
from shoal.data.features.sparse import SparseColumn
from shoal.inspect import inspect_file, starter_config
from shoal.training.loop import Trainer


def _rows(n: int = 1200, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        tags = [str(t) for t in rng.choice(["a", "b", "c", "d", "e", "f"], size=int(rng.integers(0, 4)), replace=False)]
        codes = [int(c) for c in rng.integers(0, 50, size=int(rng.integers(1, 3)))]
        y = int("a" in tags or rng.random() < 0.1)
        rows.append({"x": float(rng.normal()), "tags": tags, "codes": codes, "y": y})
    return rows


def test_a_list_column_reads_as_its_joined_cells() -> None:
    feature = SparseColumn("tags", "tags", 7, 1000, separator="|")
    lists = pa.chunked_array([pa.array([["a", "b"], [], None, [" c "], ["a", "", None, "d"]])])
    cells = pa.chunked_array([pa.array(["a|b", "", None, " c ", "a| |d"])])
    for a, b in ((lists, cells), (pa.array([[1, 2], [3]]), pa.array(["1|2", "3"]))):
        (ids_a, offsets_a, _), (ids_b, offsets_b, _) = feature.ids(a, None), feature.ids(b, None)
        np.testing.assert_array_equal(ids_a, ids_b)
        np.testing.assert_array_equal(offsets_a, offsets_b)
        assert feature.values(a).to_pylist() == feature.values(b).to_pylist()
    assert feature.ids(lists, None)[1].tolist() == [0, 2, 3, 4, 5, 7]  # [] and null: the one id 0
    empty = feature.ids(pa.array([[], None], pa.list_(pa.null())), None)  # a chunk of empty lists: list<null>
    assert empty[0].tolist() == [0, 0] and empty[1].tolist() == [0, 1, 2]


def test_a_single_id_feature_refuses_a_list_column_naming_the_fix() -> None:
    from shoal.data.readers import BadInputError

    with pytest.raises(BadInputError, match=r"column 'tags' holds list<item: string>.*give the feature a separator"):
        SparseColumn("tags", "tags", 7, 1000).ids(pa.chunked_array([pa.array([["a"]])]), np.zeros(2, np.int64))


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_inspect_train_predict_and_serve_a_list_column(tmp_path: Path, suffix: str) -> None:
    rows = _rows()
    path = tmp_path / f"rows{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    profile = inspect_file(path, label="y")
    columns = {c.name: c for c in profile.columns}
    assert columns["tags"].kind == "sparse" and columns["tags"].dtype == "list<string>"
    assert columns["codes"].kind == "sparse" and columns["codes"].dtype == "list<int64>"  # [3] is an id, no number
    assert "lists of ids" in columns["tags"].reason
    cfg_path = tmp_path / "starter.yaml"
    cfg_path.write_text(starter_config(profile, cfg_path))
    cfg = load_config(cfg_path, ["train.pictures=false"])  # no PNGs (~1 s): none is read
    assert {f.name: f.separator for f in cfg.features if f.kind == "sparse"} == {"tags": "|", "codes": "|"}
    result = Trainer(cfg, tmp_path / "run").fit()
    assert result.metrics["valid_auc"] > 0.8  # "a" in the tags decides most labels
    out = tmp_path / "scored.csv"
    scored = CliRunner().invoke(cli.app, ["predict", str(tmp_path / "run" / "bundle"), str(path), "-o", str(out)])
    assert scored.exit_code == 0, scored.output
    proba = pacsv.read_csv(out).column("probability").to_numpy()
    assert len(proba) == len(rows) and proba[["a" in r["tags"] for r in rows]].min() > 0.5  # type: ignore[operator]
    # the raw ONNX graph reads the list column too (its feed splits nothing: the ids are the list's)
    from shoal.export.raw import export_raw_onnx

    export_raw_onnx(tmp_path / "run" / "bundle")
    raw_out = tmp_path / "scored_raw.csv"
    scored = CliRunner().invoke(cli.app, ["predict", str(tmp_path / "run" / "bundle"), str(path), "-o", str(raw_out),
                                          "--backend", "raw"])
    assert scored.exit_code == 0 and "onnxruntime-raw" in scored.output, scored.output
    np.testing.assert_allclose(pacsv.read_csv(raw_out).column("probability").to_numpy(), proba, atol=1e-5, rtol=0)

    from shoal.serving.app import ServeSettings, create_app

    with TestClient(create_app(tmp_path / "run" / "bundle", ServeSettings())) as client:
        listed = client.post("/predict", json={"rows": [{"x": 0.1, "tags": ["a", "b"], "codes": [3, 7]},
                                                        {"x": 0.1, "tags": [], "codes": [3]}]})
        joined = client.post("/predict", json={"rows": [{"x": 0.1, "tags": "a|b", "codes": "3|7"},
                                                        {"x": 0.1, "tags": None, "codes": 3}]})
        assert listed.status_code == 200 and listed.json() == joined.json()
        bad = client.post("/predict", json={"rows": [{"x": 0.1, "tags": ["a|b"], "codes": []}]})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["msg"] == ("field 'tags': the id 'a|b' holds the feature's separator '|': "
                                                 "it would read as several ids")


def test_quoted_lists_joined_by_the_files_own_delimiter(tmp_path: Path) -> None:
    """"25,20,10" in a comma-separated file is quoted, so the comma inside can only be the list's: 40 ids, not
    hundreds of combinations read as single ids."""
    import csv

    rng = np.random.default_rng(0)
    path = tmp_path / "lists.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["x", "cats", "y"])
        for _ in range(800):
            cats = [int(c) for c in rng.integers(0, 40, size=int(rng.integers(1, 4)))]
            writer.writerow([f"{rng.normal():.4f}", ",".join(map(str, cats)), int(min(cats) < 8 or rng.random() < 0.1)])
    profile = inspect_file(path, label="y")
    cats = profile.column("cats")
    assert (cats.kind, cats.multi_id_separator) == ("sparse", ",")
    assert "lists of ids separated by ','" in cats.reason and "40 distinct ids" in cats.reason
    cfg_path = tmp_path / "starter.yaml"
    cfg_path.write_text(starter_config(profile, cfg_path))
    result = Trainer(load_config(cfg_path, ["train.pictures=false"]), tmp_path / "run").fit()  # no PNGs: none read
    assert result.metrics["valid_auc"] > 0.8  # an id below 8 in the list decides most labels
