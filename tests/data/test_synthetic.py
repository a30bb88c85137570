"""Tests for the synthetic click log generator (``shoal.data.synthetic``)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from shoal.data import synthetic as syn
from shoal.data.synthetic import SynthSpec, SynthTruth, cardinalities, generate, load_truth, truth_path

SMALL = SynthSpec(rows=3_000, dense=4, sparse=5, max_cardinality=100_000, chunk_rows=1_000, seed=7)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthTruth, pa.Table]:
    """20k rows with the default feature layout, generated once for several tests."""
    path = tmp_path_factory.mktemp("synth") / "medium.parquet"
    truth = generate(path, SynthSpec(rows=20_000, chunk_rows=8_000, seed=3))
    return path, truth, pq.read_table(path)


def test_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    ta, tb = generate(a, SMALL), generate(b, SMALL)
    assert ta == tb
    assert pq.read_table(a).equals(pq.read_table(b))
    assert a.read_bytes() == b.read_bytes()
    other = tmp_path / "c.parquet"
    generate(other, replace(SMALL, seed=8))
    assert not pq.read_table(a).equals(pq.read_table(other))


# Pinned from the generator as it was before the module became a package: the same spec and seed must keep giving
# the same log across refactors (and across pyarrow versions, so the digest covers the values, not the file bytes,
# which embed the writer's version).
SMALL_DIGEST = "8249a52824da6356d5d1d68549d551832ffaa54b2758c7ea254516817ec01fd2"
SMALL_TRUTH = {"rows": 3000, "base_rate": 0.030666666666666665, "bayes_auc": 0.7758133484839423,
               "bayes_logloss": 0.12157037971190296, "bayes_ne": 0.88703844526382}


def _content_digest(table: pa.Table) -> str:
    """SHA-256 of every column's name and values (``None`` for nulls), in column order."""
    h = hashlib.sha256()
    for name in table.column_names:
        h.update(name.encode() + b"\0" + json.dumps(table[name].to_pylist()).encode() + b"\0")
    return h.hexdigest()


def test_pinned_output(tmp_path: Path) -> None:
    path = tmp_path / "small.parquet"
    truth = generate(path, SMALL)
    assert _content_digest(pq.read_table(path)) == SMALL_DIGEST
    got = truth.to_json()
    for key, want in SMALL_TRUTH.items():
        assert got[key] == pytest.approx(want, rel=1e-12, abs=0), key


def test_schema_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    calls: list[int] = []
    generate(path, SMALL, progress=calls.append)
    assert calls == [1_000, 2_000, 3_000]
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    assert not list(tmp_path.glob("*.tmp"))
    table = pq.read_table(path)
    assert table.num_rows == SMALL.rows
    assert table.column_names == ["label", "d0", "d1", "d2", "d3", "s0", "s1", "s2", "s3", "s4"]
    assert table.schema.field("label").type == pa.int8()
    assert set(pc.unique(table["label"]).to_pylist()) <= {0, 1}
    for k in range(SMALL.dense):
        col = table[f"d{k}"]
        assert col.type == pa.float64()
        values = col.drop_null().to_numpy()
        assert (values >= 0).all() and (values == np.floor(values)).all()
        assert 0.02 < col.null_count / table.num_rows < 0.08
    for j in range(SMALL.sparse):
        col = table[f"s{j}"]
        assert col.type == pa.string()
        assert 0.01 < col.null_count / table.num_rows < 0.05
        single = re.compile(rf"s{j}_[0-9a-f]{{6}}")
        for cell in col.drop_null().to_pylist()[:200]:
            assert all(single.fullmatch(part) for part in cell.split("|"))


def test_cardinalities_spread_log_uniformly() -> None:
    cards = cardinalities(SynthSpec(max_cardinality=1_000_000))
    assert len(cards) == 26
    assert sorted(cards)[0] == 10 and sorted(cards)[-1] == 1_000_000
    assert cardinalities(SynthSpec(max_cardinality=3)) == [3] * 26


def test_base_rate(medium: tuple[Path, SynthTruth, pa.Table]) -> None:
    _, truth, table = medium
    observed = float(np.mean(table["label"].to_numpy()))
    assert truth.base_rate == pytest.approx(observed)
    assert abs(observed - 0.03) / 0.03 < 0.2


def test_base_rate_follows_spec(tmp_path: Path) -> None:
    truth = generate(tmp_path / "x.parquet", SynthSpec(rows=20_000, dense=2, sparse=4, base_rate=0.2))
    assert abs(truth.base_rate - 0.2) / 0.2 < 0.1


def test_zipf_frequencies(medium: tuple[Path, SynthTruth, pa.Table]) -> None:
    _, _, table = medium
    spec = SynthSpec(rows=20_000, chunk_rows=8_000, seed=3)
    cards = cardinalities(spec)
    j = int(np.argmax(cards[:-1]))  # the highest-cardinality single-id feature
    counts = np.sort(table[f"s{j}"].drop_null().value_counts().field("counts").to_numpy())[::-1]
    assert len(counts) <= cards[j]
    assert counts[0] > 50 * np.median(counts)


def test_zipf_sampler_bounds() -> None:
    rng = np.random.default_rng(0)
    big = syn._zipf_ranks(rng, 100_000, 10_000_000, 1.1)
    assert big.min() == 1 and big.max() <= 10_000_000
    assert np.mean(big == 1) > 0.02  # rank 1 gets ~ (1 - 2^-0.1) / (1 - 1e7^-0.1) of the mass
    uniform = syn._zipf_ranks(rng, 100_000, 10, 0.0)
    assert set(np.unique(uniform)) == set(range(1, 11))
    assert np.bincount(uniform)[1:].min() > 9_000
    harmonic = syn._zipf_ranks(rng, 1_000, 5, 1.0)
    assert harmonic.min() >= 1 and harmonic.max() <= 5


def test_ids_are_scrambled_bijectively() -> None:
    ranks = np.arange(1, 1_000_001, dtype=np.int64)
    codes = syn._id_codes(4, ranks)
    assert len(np.unique(codes)) == len(ranks)
    assert codes.max() < 2**24
    assert not (np.diff(codes.astype(np.int64)) > 0).all()  # order says nothing about rank
    top = syn._id_codes(4, np.array([10_000_000]))
    assert int(top[0]) < 2**24


def test_list_cells(medium: tuple[Path, SynthTruth, pa.Table]) -> None:
    _, _, table = medium
    cells = table["s25"].drop_null().to_pylist()
    sizes = np.array([len(c.split("|")) for c in cells])
    assert sizes.min() == 1 and sizes.max() == 5
    assert all(len(set(c.split("|"))) == len(c.split("|")) for c in cells)
    others = table["s0"].drop_null().to_pylist()
    assert not any("|" in c for c in others)


def test_truth_round_trip(medium: tuple[Path, SynthTruth, pa.Table]) -> None:
    path, truth, _ = medium
    assert truth_path(path) == path.with_name("medium.parquet.truth.json")
    assert load_truth(path) == truth
    data = json.loads(truth_path(path).read_text())
    assert set(data) == {"rows", "base_rate", "bayes_auc", "bayes_logloss", "bayes_ne", "spec"}
    assert data["spec"]["seed"] == 3 and data["rows"] == 20_000
    assert SynthTruth.from_json(truth.to_json()) == truth


def test_truth_metrics_consistent(medium: tuple[Path, SynthTruth, pa.Table]) -> None:
    _, truth, _ = medium
    q = truth.base_rate
    entropy = -(q * math.log(q) + (1 - q) * math.log(1 - q))
    assert truth.bayes_ne == pytest.approx(truth.bayes_logloss / entropy)
    assert 0.6 < truth.bayes_ne < 0.95


def test_single_class_truth_is_nan(tmp_path: Path) -> None:
    truth = generate(tmp_path / "one.parquet", SynthSpec(rows=1, dense=1, sparse=4))
    assert math.isnan(truth.bayes_auc) and math.isnan(truth.bayes_ne)
    assert math.isnan(load_truth(tmp_path / "one.parquet").bayes_auc)


def test_bayes_auc_beats_dense_only_model(medium: tuple[Path, SynthTruth, pa.Table]) -> None:
    _, truth, table = medium
    assert 0.75 < truth.bayes_auc < 0.92
    y = table["label"].to_numpy()
    dense = np.column_stack([table[f"d{k}"].to_numpy(zero_copy_only=False) for k in range(13)])
    x = np.log1p(np.nan_to_num(dense, nan=0.0))
    model = LogisticRegression(max_iter=500).fit(x, y)
    dense_auc = roc_auc_score(y, model.decision_function(x))  # in-sample: flatters the dense model
    assert truth.bayes_auc > dense_auc + 0.1


def test_planted_interactions_matter() -> None:
    spec = SynthSpec(seed=0)
    params = syn._params(spec)
    bias = syn._bias(spec, params)
    rng = np.random.default_rng(11)
    sample = syn._sample(rng, spec, params, 60_000)
    full = syn._logit(sample, params)
    y = rng.random(sample.rows) < syn._sigmoid(bias + full)
    auc_full = roc_auc_score(y, full)
    no_dxs = roc_auc_score(y, syn._logit(sample, params, dense_x_sparse=False))
    no_sxs = roc_auc_score(y, syn._logit(sample, params, sparse_x_sparse=False))
    assert auc_full > no_dxs + 0.005
    assert auc_full > no_sxs + 0.005
    # the pair effect is not a sum of per-id effects: restricted to the top ids it is its own signal
    pair = syn._logit(sample, params, dense=False, sparse=False, dense_x_sparse=False)
    assert np.count_nonzero(pair) > 1_000 and np.std(pair[pair != 0]) > 0.3


def test_bias_calibration() -> None:
    logit0 = np.random.default_rng(0).normal(0.0, 1.5, 10_000)
    bias = syn._calibrate_bias(logit0, 0.05)
    assert float(np.mean(syn._sigmoid(bias + logit0))) == pytest.approx(0.05, rel=1e-6)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rows", 0),
        ("rows", 2.5),
        ("dense", -1),
        ("sparse", 3),
        ("base_rate", 0.0),
        ("base_rate", 1.0),
        ("base_rate", float("nan")),
        ("max_cardinality", 0),
        ("max_cardinality", 10_000_001),
        ("zipf_exponent", -0.5),
        ("seed", -1),
        ("chunk_rows", 0),
        ("rows", True),
    ],
)
def test_bad_spec_names_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"SynthSpec\.{field}=") as info:
        SynthSpec(**{field: value})  # type: ignore[arg-type]
    assert "must" in str(info.value)


def test_numeric_target_with_its_noise_floor(tmp_path: Path) -> None:
    """``target``: a regression label planted from the same logit; the labels and features do not change."""
    spec = SynthSpec(rows=4000, dense=3, sparse=4, max_cardinality=100, seed=3, chunk_rows=1500)
    plain = tmp_path / "plain.parquet"
    with_target = tmp_path / "target.parquet"
    generate(plain, spec)
    truth = generate(with_target, replace(spec, target="amount", target_noise=2.0))
    a, b = pq.read_table(plain), pq.read_table(with_target)
    assert b.column_names == [*a.column_names, "amount"] and b.drop(["amount"]).equals(a)
    amount = b.column("amount").to_numpy()
    assert truth.target_rmse == 2.0 and 0.5 < truth.target_r2 < 1.0
    # what is left after the best prediction is the noise: R^2 of the truth matches the recorded ceiling
    var = float(np.var(amount))
    assert 1.0 - 4.0 / var == pytest.approx(truth.target_r2, abs=0.02)
    assert load_truth(with_target).target_r2 == pytest.approx(truth.target_r2)
    assert load_truth(plain).target_r2 is None
    with pytest.raises(ValueError, match="SynthSpec.target='d0' is invalid"):
        SynthSpec(target="d0")
    with pytest.raises(ValueError, match="SynthSpec.target_noise=0.0 is invalid"):
        SynthSpec(target="y2", target_noise=0.0)
