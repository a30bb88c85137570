"""ONNX export: the padded form, parity with PyTorch for every registered model, int8/fp16, the CLI, the bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import yaml
from typer.testing import CliRunner

from shoal.artifacts.bundle import Bundle, load_bundle, save_bundle
from shoal.cli import main as cli
from shoal.cli.main import app
from shoal.config import ConfigError, parse_config
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.synthetic import SynthSpec, generate
from shoal.export.onnx import FP32_TOLERANCE, INT8_TOLERANCE, ExportError, export_onnx, random_rows
from shoal.export.padded import layout_for
from shoal.models import available, build
from shoal.runtime.feed import InputLayout, padded_feed
from shoal.runtime.latency import bench_bundle, bench_rows, latency, percentiles, throughput, time_calls
from shoal.runtime.onnx import OnnxPredictor

runner = CliRunner()

# small sizes for the models we know; a model added later is built with its config defaults
SMALL = {"dlrm": {"embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]}, "mlp": {"embedding_dim": 4, "hidden": [8]},
         "bag": {"embedding_dim": 4}, "bytecnn": {"embedding_dim": 4, "channels": [6, 5], "kernel_size": 3,
                                                  "hidden": [8]}}
FEATURES: list[dict[str, Any]] = [
    {"name": "a", "kind": "dense"}, {"name": "b", "kind": "dense", "transform": "log1p"},
    {"name": "u", "kind": "sparse", "buckets": 50}, {"name": "v", "kind": "sparse", "buckets": 20},
    {"name": "tags", "kind": "sparse", "buckets": 30, "separator": "|"},
    {"name": "text", "kind": "text", "tokens": "bytes", "max_bytes": 20},
]


def _bundle(name: str, tmp: Path, classes: list[str] | None = None) -> tuple[Path, Bundle]:
    """A bundle of model ``name`` with random weights (no training), saved in ``tmp``."""
    label: dict[str, Any] = {"column": "y"} if classes is None else {"column": "y", "kind": "multiclass",
                                                                        "classes": classes}
    try:
        cfg = parse_config({"data": {"train": "unused.csv"}, "label": label, "features": FEATURES,
                            "model": {"name": name, **SMALL.get(name, {})}})
    except ConfigError as err:
        pytest.skip(f"model {name!r}: no config for the export test ({err}); add it to SMALL")
    encoder = Encoder(cfg.features, cfg.label)
    torch.manual_seed(0)
    model = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("bag.weight"):  # embedding tables start tiny (logistic: zero); make them matter
                torch.nn.init.normal_(p, std=0.3)
    meta: dict[str, Any] = {"train_base_rate": 0.3}
    if classes:
        meta |= {"classes": classes, "train_class_prior": [1 / len(classes)] * len(classes)}
    save_bundle(tmp / "bundle", model, encoder, cfg, meta)
    return tmp / "bundle", load_bundle(tmp / "bundle")


def _rows(bundle: Bundle, rows: int, seed: int = 1, classes: int = 0) -> Batch:
    batch = random_rows(layout_for(bundle.encoder), list(bundle.encoder.buckets), rows, seed=seed)
    rng = np.random.default_rng(seed)
    batch.label = (rng.integers(0, classes, rows) if classes else rng.random(rows) < 0.3).astype(np.float32)
    return batch


# -- the padded form ----------------------------------------------------------------------------------------------
def test_padded_feed_matches_the_picture() -> None:
    """Jagged ids -> (B, L) ids padded with 0 and mean-pooling weights 1/len; empty rows pool to nothing."""
    layout = InputLayout(dense_dim=1, singles=(0,), lists=(1,))
    batch = Batch(dense=np.zeros((4, 1), np.float32),
                  ids=[np.array([5, 6, 7, 8]), np.array([7, 3, 9, 4, 8, 2])],
                  offsets=[np.arange(5), np.array([0, 2, 3, 3, 6])], label=None, lines=np.arange(4))
    feed = padded_feed(batch, layout)
    assert list(feed) == layout.input_names == ["dense", "single_ids", "ids_1", "weights_1"]
    np.testing.assert_array_equal(feed["single_ids"], [[5], [6], [7], [8]])
    np.testing.assert_array_equal(feed["ids_1"], [[7, 3, 0], [9, 0, 0], [0, 0, 0], [4, 8, 2]])
    np.testing.assert_allclose(feed["weights_1"], [[.5, .5, 0], [1, 0, 0], [0, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
    assert feed["ids_1"].dtype == np.int64 and feed["weights_1"].dtype == np.float32


def test_one_row_feeds_equal_the_rows_of_a_batch_feed() -> None:
    """Batch 1 takes a shortcut (no scatter): each one-row feed is its row of the batch feed, without the
    batch's extra padding, with the same float32 weights; an empty row pools to nothing."""
    layout = InputLayout(dense_dim=1, singles=(0,), lists=(1,))
    lists = [[7, 3], [9], [], [4, 8, 2], list(range(1, 8))]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
    ids = np.array([i for x in lists for i in x], np.int64)
    batch = Batch(dense=np.arange(5, dtype=np.float32).reshape(5, 1), ids=[np.arange(10, 15), ids],
                  offsets=[np.arange(6), offsets], label=None, lines=np.arange(5))
    whole = padded_feed(batch, layout)
    for r, row in enumerate(lists):
        one = padded_feed(batch.slice(r, r + 1), layout)
        width = max(len(row), 1)
        np.testing.assert_array_equal(one["ids_1"], whole["ids_1"][r:r + 1, :width])
        np.testing.assert_array_equal(one["weights_1"], whole["weights_1"][r:r + 1, :width])
        np.testing.assert_array_equal(one["single_ids"], whole["single_ids"][r:r + 1])
        assert one["ids_1"].dtype == np.int64 and one["weights_1"].dtype == np.float32


def test_several_one_id_features_pack_in_layout_order() -> None:
    """single_ids (B, S) holds input ``layout.singles[j]`` in column j, for a batch and for each of its rows,
    C-contiguous (ONNX Runtime reads the buffer as it is)."""
    layout = InputLayout(dense_dim=0, singles=(2, 0, 3), lists=(1,))
    off = np.arange(4)  # the one-id inputs share their offsets, as the encoder makes them
    batch = Batch(dense=np.zeros((3, 0), np.float32),
                  ids=[np.array([10, 11, 12]), np.array([5, 6]), np.array([20, 21, 22], np.int32),
                       np.array([30, 31, 32])],
                  offsets=[off, np.array([0, 1, 1, 2]), off, off], label=None, lines=np.arange(3))
    feed = padded_feed(batch, layout)
    np.testing.assert_array_equal(feed["single_ids"], [[20, 10, 30], [21, 11, 31], [22, 12, 32]])
    assert feed["single_ids"].dtype == np.int64 and feed["single_ids"].flags.c_contiguous
    for r in range(3):
        one = padded_feed(batch.slice(r, r + 1), layout)["single_ids"]
        np.testing.assert_array_equal(one, feed["single_ids"][r:r + 1])
        assert one.dtype == np.int64 and one.flags.c_contiguous


def test_one_row_with_two_ids_in_a_one_id_feature_is_refused() -> None:
    """The one-row check is a scalar test, and a second input sharing checked offsets is still counted."""
    layout = InputLayout(dense_dim=0, singles=(0, 1), lists=(), names=("user", "ad"))
    one = Batch(dense=np.zeros((1, 0), np.float32), ids=[np.array([1, 2]), np.array([3])],
                offsets=[np.array([0, 2]), np.array([0, 1])], label=None, lines=np.arange(1))
    with pytest.raises(ValueError, match=r"user must hold exactly one id per row .* 1 rows hold 2 ids"):
        padded_feed(one, layout)
    off = np.array([0, 1])
    shared = Batch(dense=np.zeros((1, 0), np.float32), ids=[np.array([1]), np.array([3, 4])], offsets=[off, off],
                   label=None, lines=np.arange(1))
    with pytest.raises(ValueError, match=r"ad must hold exactly one id per row .* 1 rows hold 2 ids"):
        padded_feed(shared, layout)


def test_single_id_feature_with_a_list_is_refused() -> None:
    layout = InputLayout(dense_dim=0, singles=(0,), lists=(), names=("user",))
    batch = Batch(dense=np.zeros((2, 0), np.float32), ids=[np.array([1, 2, 3])], offsets=[np.array([0, 2, 3])],
                  label=None, lines=np.arange(2))
    with pytest.raises(ValueError, match=r"user must hold exactly one id per row .* 2 rows hold 3 ids"):
        padded_feed(batch, layout)


# -- parity for every registered model ---------------------------------------------------------------------------
@pytest.fixture(scope="module", params=available())
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Bundle, Any]:
    folder, bundle = _bundle(str(request.param), tmp_path_factory.mktemp(str(request.param)))
    report = export_onnx(folder, int8=True, fp16_embeddings=True, rows=_rows(bundle, 400))
    return bundle, report


def test_every_model_exports_with_parity(exported: tuple[Bundle, Any]) -> None:
    bundle, report = exported
    assert set(report.files) == {"fp32", "int8", "fp16"}
    assert report.parity["fp32"]["max_abs_logit_diff"] <= FP32_TOLERANCE
    assert report.parity["fp16"]["ok"], report.parity["fp16"]
    int8 = report.parity["int8"]
    assert abs(int8["auc"] - int8["torch_auc"]) <= INT8_TOLERANCE and int8["ok"]
    assert report.sizes_mib["int8"] > 0 and report.sizes_mib["fp16"] <= report.sizes_mib["fp32"]
    doc = json.loads((report.dir / "export.json").read_text())
    assert doc["parity"]["fp32"]["ok"] and doc["layout"]["input_names"] == report.layout["input_names"]


def test_graph_has_no_loop_and_stable_inputs(exported: tuple[Bundle, Any]) -> None:
    _, report = exported
    graph = onnx.load(str(report.path("fp32"))).graph
    ops = {n.op_type for n in graph.node}
    assert not ops & {"Loop", "Scan"}, ops
    assert "Gather" in ops
    names = [i.name for i in graph.input]
    assert names[0] == "dense" and set(names) <= set(report.layout["input_names"])
    assert [o.name for o in graph.output] == ["logits"]


@pytest.mark.parametrize("rows", [1, 300])
def test_predictor_matches_torch_at_batch_1_and_300(exported: tuple[Bundle, Any], rows: int) -> None:
    """Lists of several ids, empty lists and the missing id 0, in batches of any size."""
    bundle, report = exported
    batch = _rows(bundle, rows, seed=rows)
    for k in layout_for(bundle.encoder).singles:  # some missing values (reserved id 0)
        batch.ids[k][::3] = 0
    assert any((np.diff(o) == 0).any() for o in batch.offsets) or rows == 1  # empty lists are in there
    predictor = OnnxPredictor(report.dir)
    np.testing.assert_allclose(predictor.predict_logits(batch), bundle.predict_logits(batch), rtol=0,
                               atol=FP32_TOLERANCE)
    np.testing.assert_allclose(predictor.predict_proba(batch), bundle.predict_proba(batch), rtol=0, atol=1e-5)


def test_bundle_predicts_in_eval_mode_whatever_mode_a_module_was_left_in(tmp_path: Path) -> None:
    """predict_logits calls eval() only when some module is in training mode (it costs ~25 us a call), so a
    dropout layer left training, even deep inside, must still be switched off."""
    _, bundle = _bundle("bytecnn", tmp_path)
    batch = _rows(bundle, 64)
    want = bundle.predict_logits(batch)
    deep = [m for m in bundle.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert deep, "the test needs a model with dropout"
    deep[-1].train()  # one submodule only: the top-level module still says eval
    assert not bundle.model.training
    np.testing.assert_array_equal(bundle.predict_logits(batch), want)
    assert not any(m.training for m in bundle.model.modules())


def test_multiclass_export(tmp_path: Path) -> None:
    folder, bundle = _bundle("mlp", tmp_path, classes=["a", "b", "c"])
    report = export_onnx(folder, int8=True, rows=_rows(bundle, 200, classes=3))
    assert report.parity["fp32"]["ok"] and "accuracy" in report.parity["int8"]
    batch = _rows(bundle, 7, classes=3)
    predictor = OnnxPredictor(folder, variant="int8")  # the bundle folder finds its onnx/ subfolder
    proba = predictor.predict_proba(batch)
    assert proba.shape == (7, 3) and predictor.classes == ["a", "b", "c"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(OnnxPredictor(folder).predict_logits(batch), bundle.predict_logits(batch),
                               atol=FP32_TOLERANCE, rtol=0)


def test_errors_say_how_to_fix(tmp_path: Path) -> None:
    folder, bundle = _bundle("logistic", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"shoal export RUN --onnx"):
        OnnxPredictor(folder)
    with pytest.raises(ExportError, match="needs out_dir"):
        export_onnx(bundle)
    export_onnx(folder, rows=_rows(bundle, 50))
    with pytest.raises(FileNotFoundError, match=r"--int8"):
        OnnxPredictor(folder, variant="int8")
    with pytest.raises(ValueError, match=r"variant must be one of fp32, int8, fp16, not 'int4'"):
        OnnxPredictor(folder, variant="int4")


# -- latency helpers -------------------------------------------------------------------------------------------
def test_latency_helpers() -> None:
    calls = []
    times = time_calls(lambda: calls.append(1), warmup=3, min_calls=10, seconds=0.0)
    assert len(times) == 10 and len(calls) == 13
    stats = percentiles(np.array([0.001] * 99 + [0.1]))
    assert stats.p50_ms == pytest.approx(1.0) and stats.p99_ms > 1.0 and stats.calls == 100
    assert latency(lambda: None, seconds=0.01).p50_ms >= 0
    assert throughput(lambda: None, rows=256, seconds=0.01) > 0
    with pytest.raises(ValueError, match="min_calls"):
        time_calls(lambda: None, min_calls=0)


# -- the command line, end to end -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("run")
    data = tmp / "clicks.parquet"
    generate(data, SynthSpec(rows=4000, dense=3, sparse=4, base_rate=0.2, max_cardinality=300, seed=3))
    doc = {"name": "tiny", "data": {"train": str(data), "valid_fraction": 0.2},
           "label": {"column": "label"},
           "features": [{"name": f"d{i}", "kind": "dense", "transform": "log1p"} for i in range(3)]
           + [{"name": f"s{i}", "kind": "sparse", "buckets": 512} for i in range(3)]
           + [{"name": "s3", "kind": "sparse", "buckets": 512, "separator": "|"}],
           "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]},
           "train": {"epochs": 1, "batch_size": 256, "threads": 1, "pictures": False}}  # no PNGs: none is read
    (tmp / "run.yaml").write_text(yaml.safe_dump(doc))
    home = tmp / "home"
    result = runner.invoke(app, ["train", str(tmp / "run.yaml"), "--home", str(home)])
    assert result.exit_code == 0, result.output
    return home, "latest"


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_export_and_bench(trained: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "_width", 200)
    home, run = trained
    result = runner.invoke(app, ["export", run, "--home", str(home)])
    assert result.exit_code == 2 and "--onnx" in result.output
    out = _ok("bench", run, "--home", str(home), "--seconds", "0.02", "--no-isolate")  # nothing exported yet
    assert "exporting fp32 and int8 to a temporary folder" in out and "onnx-int8" in out

    out = _ok("export", run, "--onnx", "--int8", "--home", str(home))
    assert "model.int8.onnx" in out and "Loop nodes: 0" in out and "valid-split.parquet" in out
    onnx_dir = next((home / "runs").iterdir()) / "bundle" / "onnx"
    doc = json.loads((onnx_dir / "export.json").read_text())
    assert doc["parity"]["fp32"]["max_abs_logit_diff"] <= FP32_TOLERANCE and doc["rows"] > 100
    assert doc["layout"]["input_names"] == ["dense", "single_ids", "ids_3", "weights_3"]

    bench_json = tmp_path / "bench.json"
    out = _ok("bench", run, "--home", str(home), "--json", str(bench_json), "--seconds", "0.05", "--no-isolate")
    assert "onnx-int8" in out and "p99" in out
    rows = json.loads(bench_json.read_text())
    # the model call alone, then raw row -> answer end to end (no raw graph exported here: the encoder's paths)
    assert {r["system"] for r in rows} == {"torch", "onnx-fp32", "onnx-int8", "e2e-torch", "e2e-onnx-fp32"}
    assert {r["metric"] for r in rows} == {"latency_ms_p50", "latency_ms_p99", "infer_rows_per_s", "size_mib",
                                          "peak_rss_mib"}
    assert all(set(r) == {"bench", "dataset", "system", "metric", "value"} and r["value"] >= 0 for r in rows)


def test_bench_over_http(trained: tuple[Path, str], tmp_path: Path) -> None:
    """--http: shoal serve on loopback, one client then --clients; every request answered, the figures written."""
    home, run = trained
    bench_json = tmp_path / "http.json"
    out = _ok("bench", run, "--home", str(home), "--json", str(bench_json), "--seconds", "0.3", "--no-isolate",
              "--no-e2e", "--http", "--clients", "4")
    assert "over HTTP: POST /predict" in out and "backend" in out
    rows = [r for r in json.loads(bench_json.read_text()) if r["system"].startswith("http-")]
    figures = {(r["system"], r["metric"]): r["value"] for r in rows}
    assert {s for s, _ in figures} == {"http-1-clients", "http-4-clients"}
    assert all(figures[s, "requests_per_s"] > 0 and figures[s, "errors_5xx"] == 0 for s, _ in figures)
    assert all(0 < figures[s, "latency_ms_p50"] <= figures[s, "latency_ms_p99"] for s, _ in figures)


def test_bench_in_an_isolated_process(trained: tuple[Path, str]) -> None:
    """A system measured in its own process reports its own figures (the default of `shoal bench`)."""
    home, _ = trained
    folder = next((home / "runs").iterdir()) / "bundle"
    bundle = load_bundle(folder)
    rows = _rows(bundle, 64)
    (result,) = bench_bundle(folder, rows, systems=["onnx-fp32"], batch=32, seconds=0.05, isolate=True)
    assert result.isolated and result.rows_per_s > 0 and result.peak_rss_mib > 10 and result.batch == 32
    assert bench_rows([result], "tiny")[0]["system"] == "onnx-fp32"
    with pytest.raises(ValueError, match="unknown system 'tensorrt'"):
        bench_bundle(folder, rows, systems=["tensorrt"])
