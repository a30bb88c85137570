"""``--backend auto``, measured (shoal/runtime/choice.py, RoutedPredictor): the decision from timings, the routing
by batch size, the cached decision and when it is thrown away. Timings are faked (an injected clock, or a
forced decision): no assert here depends on how fast this machine is."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

import shoal.runtime.predictor as predictor_module
from shoal.artifacts.bundle import Bundle, load_bundle, save_bundle
from shoal.config import parse_config
from shoal.data.batch import Batch
from shoal.data.synthetic import SynthSpec, generate
from shoal.runtime.choice import CHOICE_FILE, BackendChoice, Route, decide, measure, timing_rows
from shoal.runtime.predictor import (
    OnnxRuntimePredictor,
    RoutedPredictor,
    TorchPredictor,
    select_predictor,
)
from shoal.training.loop import Trainer


def _rows(n: int, dense: int = 2) -> Batch:
    return Batch(dense=np.arange(n * dense, dtype=np.float32).reshape(n, dense), ids=[], offsets=[], label=None,
                 lines=np.arange(1, n + 1))


class FakeClock:
    """A clock that only moves when a fake predictor says it worked."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Linear:
    """A predictor that costs ``fixed_ms + per_row_ms * rows`` on the fake clock and returns ``value`` per row."""

    def __init__(self, clock: FakeClock, fixed_ms: float, per_row_ms: float, value: float) -> None:
        self.clock, self.fixed_ms, self.per_row_ms, self.value = clock, fixed_ms, per_row_ms, value
        self.backend = f"fake-{value}"
        self.sizes: list[int] = []

    def predict_proba(self, batch: Batch) -> np.ndarray:
        self.sizes.append(len(batch))
        self.clock.now += (self.fixed_ms + self.per_row_ms * len(batch)) / 1e3
        return np.full(len(batch), self.value)


# -- deciding ----------------------------------------------------------------------------------------------------
def test_each_measured_size_goes_to_its_fastest_backend_switching_where_the_lines_cross() -> None:
    # onnx: 0.03 ms + 0.1097 ms/row; torch: 0.3 ms + 0.00706 ms/row -> equal at 1 + 0.27 / 0.1026 = 3.6 rows
    routes = decide({1: {"torch": 0.3, "onnxruntime": 0.03}, 256: {"torch": 2.1, "onnxruntime": 28.0}})
    assert routes == (Route(1, "onnxruntime"), Route(4, "torch"))
    choice = BackendChoice(routes, {}, "given", 0.0)
    assert [choice.backend_for(n) for n in (1, 3, 4, 256, 65_536)] == ["onnxruntime"] * 2 + ["torch"] * 3
    assert choice.describe() == "auto: onnxruntime for 1-3 rows, torch for 4+ rows"
    one = BackendChoice(decide({1: {"torch": 0.3, "onnxruntime": 0.03}, 256: {"torch": 9.0, "onnxruntime": 2.0}}),
                        {}, "given", 0.0)
    assert one.routes == (Route(1, "onnxruntime"),) and one.describe() == "auto: onnxruntime at every batch size"
    assert decide({1: {"b": 1.0, "a": 1.0}}) == (Route(1, "a"),)  # a tie goes by name: reproducible


def test_measure_times_every_backend_at_every_size_and_decides() -> None:
    clock = FakeClock()
    fast_call = Linear(clock, fixed_ms=0.03, per_row_ms=0.1, value=0.25)  # ONNX Runtime on a text bag
    fast_rows = Linear(clock, fixed_ms=0.3, per_row_ms=0.01, value=0.75)  # torch's embedding_bag
    choice = measure({"onnxruntime": fast_call, "torch": fast_rows}, _rows(40), [256, 1], budget_s=0.05,
                     clock=clock)
    assert choice.measured_ms == {1: {"onnxruntime": pytest.approx(0.13), "torch": pytest.approx(0.31)},
                                  256: {"onnxruntime": pytest.approx(25.63), "torch": pytest.approx(2.86)}}
    assert choice.routes == (Route(1, "onnxruntime"), Route(4, "torch"))  # equal at 3 rows: torch wins from 4
    assert set(fast_call.sizes) == {1, 256} and fast_call.sizes.count(256) >= 4  # warm-up + at least 3 timed
    assert measure({"x": Linear(clock, 1, 0, 0)}, _rows(3), [100_000], clock=clock).measured_ms.keys() == {1024}


def test_measure_refuses_nothing_to_time() -> None:
    with pytest.raises(ValueError, match="no rows to measure the backends on"):
        measure({"x": Linear(FakeClock(), 1, 0, 0)}, _rows(0), [1])
    with pytest.raises(ValueError, match="no predictors to measure"):
        measure({}, _rows(1), [1])


# -- routing -----------------------------------------------------------------------------------------------------
def test_the_router_sends_each_batch_size_to_the_backend_the_choice_names() -> None:
    clock = FakeClock()
    small, big = Linear(clock, 0, 0, 0.25), Linear(clock, 0, 0, 0.75)
    routed = RoutedPredictor({"onnxruntime": small, "torch": big},
                             BackendChoice((Route(1, "onnxruntime"), Route(17, "torch")), {}, "given", 0.0))
    for n, expected in ((1, small), (16, small), (17, big), (256, big), (5000, big)):
        out = routed.predict_proba(_rows(n))
        assert routed.predictor_for(n) is expected and expected.sizes[-1] == n
        np.testing.assert_array_equal(out, np.full(n, expected.value))
    assert routed.backend == "auto: onnxruntime for 1-16 rows, torch for 17+ rows"


def test_a_choice_naming_a_backend_not_given_is_refused() -> None:
    with pytest.raises(ValueError, match="routes batches to onnxruntime, but only torch were given"):
        RoutedPredictor({"torch": Linear(FakeClock(), 0, 0, 0)},
                        BackendChoice((Route(1, "onnxruntime"),), {}, "given", 0.0))


# -- a real exported bundle: the cache, parity with the chosen backend ----------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny text bag (a title and one id), trained and exported to ONNX, in its run folder."""
    from shoal.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("choice")
    raw = folder / "raw.parquet"
    generate(raw, SynthSpec(rows=1200, dense=1, sparse=4, base_rate=0.3, max_cardinality=50, seed=5))
    table = pq.read_table(raw)
    title = pc.binary_join_element_wise(pa.array(["a great film about ", "a dull story of "] * 600),
                                        pc.fill_null(table.column("s0"), "?"), "")
    data = folder / "texts.parquet"
    pq.write_table(table.append_column("title", title), data)
    config = {"name": "choice-test", "data": {"train": str(data), "valid_fraction": 0.2},
              "label": {"column": "label"},
              "features": [{"name": "s0", "kind": "sparse", "buckets": 128},
                           {"name": "title", "kind": "text", "buckets": 512, "max_bytes": 64}],
              "model": {"name": "bag", "embedding_dim": 8},
              "train": {"epochs": 1, "batch_size": 256, "threads": 1, "pictures": False}}  # no PNGs: none is read
    bundle = Trainer(parse_config(config, source="test"), folder / "run").fit().bundle
    export_onnx(bundle, parity_rows=200)
    return Path(bundle)


class Forced:
    """A stand-in for :func:`shoal.runtime.choice.measure` that decides without timing: onnx below 4 rows."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, predictors: dict[str, Any], rows: Batch, sizes: list[int], **kwargs: Any) -> BackendChoice:
        assert set(predictors) == {"torch", "onnxruntime"} and len(rows) > 0
        self.calls.append(list(sizes))
        return BackendChoice((Route(1, "onnxruntime"), Route(4, "torch")),
                             {n: {"torch": 1.0, "onnxruntime": 1.0} for n in sizes}, kwargs["rows_source"], 0.01)


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Forced]:
    fake = Forced()
    monkeypatch.setattr(predictor_module, "measure", fake)
    yield fake


def _choices(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "onnx" / CHOICE_FILE).read_text())["entries"])


def test_auto_outputs_are_exactly_the_chosen_backends(exported: Path, tmp_path: Path, forced: Forced) -> None:
    folder = shutil.copytree(exported.parent, tmp_path / "run") / "bundle"
    bundle = load_bundle(folder)
    auto = select_predictor(bundle, folder, "auto", batch_sizes=(1, 256))
    assert isinstance(auto, RoutedPredictor) and forced.calls == [[1, 256]]
    rows, source = timing_rows(bundle, folder, OnnxRuntimePredictor(folder, "fp32").onnx.layout, 300)
    assert source.endswith("valid-split.parquet") and 200 <= len(rows) <= 300  # the held-out fifth of 1200 rows
    onnx, torch_ = OnnxRuntimePredictor(folder, "fp32"), TorchPredictor(bundle)
    for n, reference in ((1, onnx), (3, onnx), (4, torch_), (200, torch_)):
        part = rows.slice(0, n)
        np.testing.assert_array_equal(auto.predict_proba(part), reference.predict_proba(part))


def test_the_decision_is_cached_and_measured_again_when_the_bundle_changes(exported: Path, tmp_path: Path,
                                                                           forced: Forced) -> None:
    folder = shutil.copytree(exported.parent, tmp_path / "run") / "bundle"
    bundle = load_bundle(folder)
    first = select_predictor(bundle, folder, "auto", batch_sizes=(1, 256))
    assert isinstance(first, RoutedPredictor) and not first.choice.cached and len(forced.calls) == 1
    (entry,) = _choices(folder).values()
    assert entry["routes"] == [{"min_rows": 1, "backend": "onnxruntime"}, {"min_rows": 4, "backend": "torch"}]
    assert entry["key"]["sizes"] == [1, 256] and entry["key"]["cpus"] >= 1 and entry["rows_source"].endswith(
        "valid-split.parquet")

    again = select_predictor(bundle, folder, "auto", batch_sizes=(1, 256))  # a restart: no measurement
    assert isinstance(again, RoutedPredictor) and again.choice.cached and len(forced.calls) == 1
    assert again.backend == first.backend == "auto: onnxruntime for 1-3 rows, torch for 4+ rows"

    select_predictor(bundle, folder, "auto", batch_sizes=(1, 64))  # another server setting: its own entry
    assert len(forced.calls) == 2 and len(_choices(folder)) == 2

    with torch.no_grad():  # retrained in place: a new bundle version, the old entries are dropped
        for p in bundle.model.parameters():
            p.add_(0.01)
    save_bundle(folder, bundle.model, bundle.encoder, bundle.config, bundle.meta)
    changed = select_predictor(load_bundle(folder), folder, "auto", batch_sizes=(1, 256))
    assert isinstance(changed, RoutedPredictor) and not changed.choice.cached and len(forced.calls) == 3
    assert len(_choices(folder)) == 1

    doc = json.loads((folder / "onnx" / "export.json").read_text())  # re-exported: measured again
    (folder / "onnx" / "export.json").write_text(json.dumps({**doc, "seconds": 0.5}))
    select_predictor(bundle, folder, "auto", batch_sizes=(1, 256))
    assert len(forced.calls) == 4

    (folder / "onnx" / CHOICE_FILE).write_text("{not json")  # damaged: measured again, and written anew
    select_predictor(bundle, folder, "auto", batch_sizes=(1, 256))
    assert len(forced.calls) == 5 and len(_choices(folder)) == 1


def test_explicit_backends_are_unchanged_and_never_measured(exported: Path, tmp_path: Path,
                                                            forced: Forced) -> None:
    folder = shutil.copytree(exported, tmp_path / "bundle")
    bundle = load_bundle(folder)
    assert isinstance(select_predictor(bundle, folder, "torch"), TorchPredictor)
    assert select_predictor(bundle, folder, "onnx").backend == "onnxruntime"
    shutil.rmtree(folder / "onnx")
    assert isinstance(select_predictor(bundle, folder, "auto"), TorchPredictor)  # no export: PyTorch
    assert forced.calls == []
    with pytest.raises(ValueError, match="batch_sizes must be one or more sizes of at least 1 row, not \\[0\\]"):
        shutil.copytree(exported / "onnx", folder / "onnx")
        select_predictor(bundle, folder, "auto", batch_sizes=(0,))


def test_a_bundle_copied_alone_is_timed_on_random_rows_both_backends_accept(exported: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(exported, tmp_path / "alone" / "bundle")  # no split file, data moved away
    bundle: Bundle = load_bundle(folder)
    bundle.config = bundle.config.model_copy(
        update={"data": bundle.config.data.model_copy(update={"train": tmp_path / "gone.parquet"})})
    onnx = OnnxRuntimePredictor(folder, "fp32")
    rows, source = timing_rows(bundle, folder, onnx.onnx.layout, 50)
    assert source == "random" and len(rows) == 50
    np.testing.assert_allclose(onnx.predict_proba(rows), TorchPredictor(bundle).predict_proba(rows), atol=1e-5)


def test_an_export_that_failed_its_parity_is_not_served(exported: Path, tmp_path: Path, forced: Forced) -> None:
    """export_onnx keeps a file that failed its parity check to inspect (export.json says so): auto answers with
    PyTorch, an explicit ONNX backend is refused, naming the file and the difference."""
    folder = shutil.copytree(exported, tmp_path / "bundle")
    bundle = load_bundle(folder)
    doc = json.loads((folder / "onnx" / "export.json").read_text())
    doc["parity"]["fp32"] = {**doc["parity"]["fp32"], "ok": False, "max_abs_logit_diff": 0.0015}
    (folder / "onnx" / "export.json").write_text(json.dumps(doc))
    assert isinstance(select_predictor(bundle, folder, "auto"), TorchPredictor) and forced.calls == []
    with pytest.raises(ValueError, match=r"--backend onnx: .*model.onnx failed its parity check with PyTorch "
                                         r"\(max logit difference 0.0015\).*--backend torch"):
        select_predictor(bundle, folder, "onnx")
