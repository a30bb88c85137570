"""Regression labels side by side: shoal's starter config against LightGBM and a linear model, same splits.

    python benchmarks/regression.py --json OUT.json [--quick] [--datasets adult_hours,diabetes,synthetic]

Data sets (train / validation / test, identical for every system):

- ``adult_hours``: adult_census's ``hours-per-week`` from the other 14 columns (the income class included);
  train: adult.data less shoal's held-out 10 % (validation), test: adult.test.
- ``diabetes``: scikit-learn's bundled diabetes set (442 rows, 10 numbers; no download), split 70/15/15 (seed 0).
- ``synth_log``: ``shoal synth --target amount`` (100,000 rows of the click log, 13 dense and 26 sparse columns;
  the target is 10 x the planted logit + N(0, 5^2): RMSE 5 is the floor), 80/10/10.
- ``synthetic``: a planted target, ``y = 50 + 8 sin(x1) + 5 log1p(x2) + effect(shop) + effect(shop, hour) +
  N(0, 2^2)`` over 40,000 / 5,000 / 5,000 rows: the noise floor (RMSE 2.0) is the ceiling.

Systems, each fitting the training rows and selecting on the validation rows:

- ``shoal-starter``: ``shoal.fit(train, label, task="regression", valid=valid)``: the profile's starter config,
  unchanged (what a new user gets);
- ``lightgbm``: ``LGBMRegressor`` (learning rate 0.05, up to 2,000 trees, early stopping on validation after
  100 rounds; text columns as pandas categories);
- ``linear``: one-hot categories + standardised numbers + ridge regression, alpha from a small grid on validation;
- ``mean``: the training mean (RMSE of knowing nothing).

Rows ``{bench, dataset, system, metric, value}``: test ``rmse``, ``mae``, ``r2``, ``train_s``, and
``rmse_vs_lightgbm`` (shoal's RMSE over LightGBM's: <= 1.02 is the bar).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:
    from benchmarks.common import markdown_table, row, write_json
except ImportError:  # pragma: no cover - run as a script
    from common import markdown_table, row, write_json  # type: ignore[no-redef]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BENCH = "regression"
ADULT = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
         "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income"]
Frames = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]


def adult_hours(quick: bool) -> Frames:
    from shoal.data.split import valid_mask

    def read(path: Path, skip: int) -> pd.DataFrame:
        frame = pd.read_csv(path, header=None, names=ADULT, skipinitialspace=True, skiprows=skip, na_values="?")
        frame["income"] = frame["income"].str.rstrip(".")
        return frame.rename(columns={"hours_per_week": "y"})

    train = read(DATA / "adult_census" / "adult.data", 0).dropna(subset=["y"]).reset_index(drop=True)
    test = read(DATA / "adult_census" / "adult.test", 1).dropna(subset=["y"]).reset_index(drop=True)
    held = valid_mask(np.arange(1, len(train) + 1), 0.1, 0)
    if quick:
        train, test = train.iloc[:8000], test.iloc[:3000]
        held = held[:8000]
    return train[~held].reset_index(drop=True), train[held].reset_index(drop=True), test


def diabetes(quick: bool) -> Frames:
    from sklearn.datasets import load_diabetes

    d = load_diabetes(as_frame=True)
    frame = d.frame.rename(columns={"target": "y"}).sample(frac=1.0, random_state=0).reset_index(drop=True)
    a, b = int(0.7 * len(frame)), int(0.85 * len(frame))
    return frame.iloc[:a].reset_index(drop=True), frame.iloc[a:b].reset_index(drop=True), frame.iloc[b:].reset_index(
        drop=True)


def synthetic(quick: bool) -> Frames:
    n = 12_000 if quick else 50_000
    rng = np.random.default_rng(0)
    x1, x2 = rng.uniform(-3, 3, n), rng.exponential(2.0, n)
    shop, hour = rng.integers(0, 200, n), rng.integers(0, 24, n)
    shop_effect = np.random.default_rng(1).normal(0, 3, 200)
    cross = np.random.default_rng(2).normal(0, 2, (200, 24))
    y = 50 + 8 * np.sin(x1) + 5 * np.log1p(x2) + shop_effect[shop] + cross[shop, hour] + rng.normal(0, 2.0, n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "shop": [f"s{v}" for v in shop], "hour_id": hour, "y": y})
    a, b = int(0.8 * n), int(0.9 * n)
    return frame.iloc[:a].reset_index(drop=True), frame.iloc[a:b].reset_index(drop=True), frame.iloc[b:].reset_index(
        drop=True)


def synth_log(quick: bool) -> Frames:
    """``shoal synth --target amount``: the click log's planted logit as a number (noise sd 5, the floor), its
    click label dropped (it is drawn from the same logit); 80/10/10 split."""
    from shoal.data.synthetic import SynthSpec, generate

    n = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.parquet"
        truth = generate(path, SynthSpec(rows=n, target="amount", target_noise=5.0, max_cardinality=100_000))
        frame = pd.read_parquet(path).drop(columns="label").rename(columns={"amount": "y"})
    print(f"synth_log: noise floor RMSE {truth.target_rmse:g}, best R^2 {truth.target_r2:.4f}", flush=True)
    a, b = int(0.8 * n), int(0.9 * n)
    return frame.iloc[:a].reset_index(drop=True), frame.iloc[a:b].reset_index(drop=True), frame.iloc[b:].reset_index(
        drop=True)


DATASETS: dict[str, Callable[[bool], Frames]] = {"adult_hours": adult_hours, "diabetes": diabetes,
                                                 "synthetic": synthetic, "synth_log": synth_log}


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from shoal.metrics import regression_report

    r = regression_report(y, p)
    return {"rmse": r["rmse"], "mae": r["mae"], "r2": r["r2"]}


def shoal_starter(frames: Frames, home: Path) -> tuple[dict[str, float], float]:
    import shoal

    train, valid, test = frames
    started = time.perf_counter()
    m = shoal.fit(train, label="y", task="regression", valid=valid, home=home)
    seconds = time.perf_counter() - started
    return _scores(test["y"].to_numpy(), m.predict(test.drop(columns="y"))), seconds


def _categories(frames: Frames) -> Frames:
    """Text columns as pandas categories with the training file's levels (LightGBM's categorical splits)."""
    train, valid, test = (f.copy() for f in frames)
    for c in train.columns:
        if not pd.api.types.is_numeric_dtype(train[c]):
            levels = pd.CategoricalDtype(sorted(train[c].dropna().unique()))
            for f in (train, valid, test):
                f[c] = f[c].astype(levels)
    return train, valid, test


def lightgbm(frames: Frames) -> tuple[dict[str, float], float]:
    import lightgbm as lgb

    train, valid, test = _categories(frames)
    started = time.perf_counter()
    model = lgb.LGBMRegressor(n_estimators=2000, learning_rate=0.05, verbose=-1, random_state=0)
    model.fit(train.drop(columns="y"), train["y"], eval_set=[(valid.drop(columns="y"), valid["y"])],
              callbacks=[lgb.early_stopping(100, verbose=False)])
    seconds = time.perf_counter() - started
    return _scores(test["y"].to_numpy(), model.predict(test.drop(columns="y"))), seconds


def linear(frames: Frames) -> tuple[dict[str, float], float]:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train, valid, test = frames
    x = train.drop(columns="y")
    text = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c])]
    numbers = [c for c in x.columns if c not in text]
    started = time.perf_counter()
    best: tuple[float, Any] | None = None
    for alpha in (0.01, 0.1, 1.0, 10.0, 100.0):
        prep = ColumnTransformer([("ids", make_pipeline(SimpleImputer(strategy="constant", fill_value="?"),
                                                        OneHotEncoder(handle_unknown="ignore")), text),
                                  ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers)])
        model = make_pipeline(prep, Ridge(alpha=alpha)).fit(x, train["y"])
        err = float(np.sqrt(np.mean((model.predict(valid.drop(columns="y")) - valid["y"]) ** 2)))
        if best is None or err < best[0]:
            best = (err, model)
    assert best is not None
    seconds = time.perf_counter() - started
    return _scores(test["y"].to_numpy(), best[1].predict(test.drop(columns="y"))), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="Write the rows here.")
    parser.add_argument("--quick", action="store_true", help="Smaller samples (a smoke run).")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    rows = []
    for name in args.datasets.split(","):
        if name == "adult_hours" and not (DATA / "adult_census").is_dir():
            print(f"skipping {name}: {DATA / 'adult_census'} is absent")
            continue
        frames = DATASETS[name](args.quick)
        results: dict[str, tuple[dict[str, float], float]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            results["shoal-starter"] = shoal_starter(frames, Path(tmp))
        results["lightgbm"] = lightgbm(frames)
        results["linear"] = linear(frames)
        mean = np.full(len(frames[2]), frames[0]["y"].mean())
        results["mean"] = (_scores(frames[2]["y"].to_numpy(), mean), 0.0)
        for system, (scores, seconds) in results.items():
            rows += [row(BENCH, name, system, k, v) for k, v in scores.items()]
            rows.append(row(BENCH, name, system, "train_s", seconds))
        rows.append(row(BENCH, name, "shoal-starter", "rmse_vs_lightgbm",
                        results["shoal-starter"][0]["rmse"] / results["lightgbm"][0]["rmse"]))
        print(f"{name}: " + ", ".join(f"{s} rmse {r[0]['rmse']:.4f}" for s, r in results.items()), flush=True)
    write_json(rows, args.json)
    print(markdown_table(rows, index=["dataset", "system"], columns="metric"))


if __name__ == "__main__":
    main()
