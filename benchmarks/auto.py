"""``shoal auto`` side by side with peers given the same wall-clock budget and the same splits.

    python benchmarks/auto.py --json OUT.json [--quick] [--budget 10m] [--datasets adult_census,sst2]
        [--ensemble 5] [--home DIR]

Systems, each on the same training rows, validation rows and test file:

- ``shoal-auto``: :func:`shoal.auto.auto` with the budget (test file read once at the end);
- ``shoal-auto-ensemble`` (``--ensemble K``): that search's ensemble of up to K trials chosen by forward selection
  on the validation rows (``shoal auto --ensemble K``; built in the search's reserve, within its budget);
- ``shoal-starter``: ``shoal inspect`` -> ``shoal train`` of the starter config, unchanged;
- ``lightgbm-optuna`` (tables): LightGBM tuned by Optuna (TPE) within the budget, early stopping on validation;
- ``sklearn-logistic``: one-hot (tables) or TF-IDF word 1-2-grams (text) + logistic regression, C from a small
  grid chosen on validation;
- ``fasttext-autotune`` (text): fastText's own autotune on the validation file for the budget;
- ``lightgbm-optuna-refit``, ``sklearn-logistic-refit``: the peer's chosen settings trained once more on the
  training and validation rows together (LightGBM for its best round count times the rows' ratio), as
  ``shoal auto``'s refit does; its time is added to the search's;
- ``autogluon``: AutoGluon Tabular, ``presets="medium_quality"``, the same time limit, in its own virtual
  environment (``--autogluon-python``: AutoGluon's pins do not sit beside our torch).

The validation rows of a file without a validation file are shoal's held-out split (``valid_mask`` of the line
numbers with seed 0), so every system selects on the same rows. Rows ``{bench, dataset, system, metric, value}``:
``auc``/``ne`` (click-like tables) or ``accuracy``/``macro_f1`` (text), ``train_s``, ``trials``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    from benchmarks.common import markdown_table, row, write_json
except ImportError:  # pragma: no cover - run as a script
    from common import markdown_table, row, write_json  # type: ignore[no-redef]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BENCH = "auto"


@dataclass
class Task:
    name: str
    train: Path
    valid: Path | None  # None: shoal's held-out split of train
    test: Path
    label: str
    text: bool
    metric: str  # what shoal-auto optimizes
    delimiter: str = ","
    positive: str = "1"  # tables: the label's positive value
    header: bool = False
    text_first: bool = False  # text: the text column comes before the label


def adult(work: Path) -> Task:
    """adult_census: the test labels lose their trailing "." and the comment line, as a user would clean them."""
    src = DATA / "adult_census"
    test = work / "adult.test.csv"
    lines = [ln.rstrip().rstrip(".") for ln in (src / "adult.test").read_text().splitlines()
             if ln.strip() and not ln.startswith("|")]
    test.write_text("\n".join(lines) + "\n")
    return Task("adult_census", src / "adult.data", None, test, "c14", False, "auc", positive=">50K")


def criteo_small(work: Path) -> Task:
    src = DATA / "criteo_small"
    return Task("criteo_small", src / "train.tsv", src / "dev.tsv", src / "test.tsv", "c0", False, "auc",
                delimiter="\t")


def sst2(work: Path) -> Task:
    src = DATA / "sst2"
    return Task("sst2", src / "train.tsv", src / "dev.tsv", src / "test.tsv", "label", True, "accuracy",
                header=True)


def ag_news(work: Path) -> Task:
    """AG News: 10,000 training texts (text, class name); the test file's descriptions written the same way."""
    import csv

    src = DATA / "ag_news"
    classes = (src / "classes.txt").read_text().split()
    test = work / "ag_news.test.tsv"
    with (src / "test.csv").open(newline="", encoding="utf-8") as f:
        rows = [(" ".join(r[2].split()), classes[int(r[0]) - 1]) for r in csv.reader(f)]
    test.write_text("".join(f"{t}\t{c}\n" for t, c in rows if t), encoding="utf-8")
    return Task("ag_news", src / "train_subset_alps" / "dev.tsv", None, test, "c1", True, "accuracy",
                text_first=True)


def read(task: Task) -> tuple[Any, Any, Any]:
    """(train, valid, test) data frames with the label in ``y`` (0/1, or the class index) and, for text sets, the
    text in ``text``."""
    import pandas as pd

    from shoal.data.split import valid_mask

    def held_out(train: Any) -> tuple[Any, Any]:
        held = valid_mask(np.arange(1, len(train) + 1), 0.1, 0)
        return train[~held], train[held]

    if task.text:
        frames = [pd.read_csv(p, sep="\t", quoting=3, dtype=str, keep_default_na=False,
                              header=0 if task.header else None) for p in (task.train, task.valid or task.train,
                                                                         task.test)]
        for f in frames:
            f.columns = ["text", "y"] if task.text_first else ["y", "text"]
        classes = sorted(set(frames[0]["y"]))
        for f in frames:
            f["y"] = f["y"].map({c: i for i, c in enumerate(classes)}).astype(int)
        if task.valid is None:
            return (*held_out(frames[0]), frames[2])
        return frames[0], frames[1], frames[2]
    opts = {"header": None, "sep": task.delimiter, "skipinitialspace": True, "na_values": ["?", ""]}
    files = [task.train, task.test] if task.valid is None else [task.train, task.valid, task.test]
    frames = [pd.read_csv(p, **opts) for p in files]
    for f in frames:
        f.columns = [f"c{i}" for i in range(f.shape[1])]
        f["y"] = (f.pop(task.label).astype(str).str.strip() == task.positive).astype(int)
    if task.valid is None:
        return (*held_out(frames[0]), frames[1])
    return frames[0], frames[1], frames[2]


def scores(task: Task, y: np.ndarray, p: np.ndarray, base_rate: float) -> dict[str, float]:
    """Test metrics from ``p``: P(positive) per row, or (text) a probability per class."""
    from shoal.metrics import binary_report

    if task.text:
        from sklearn.metrics import f1_score

        pred = p.argmax(axis=1) if p.ndim == 2 else (p > 0.5).astype(int)
        return {"accuracy": float((pred == y).mean()), "macro_f1": float(f1_score(y, pred, average="macro"))}
    rep = binary_report(y, p, base_rate=base_rate)
    return {"auc": rep["auc"], "ne": rep["ne"]}


# -- the systems --------------------------------------------------------------------------------------------------
def shoal_auto(task: Task, budget_s: float, home: Path, ensemble: int = 0,
               ensembles: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """``shoal auto`` within the budget, the winner's test metrics; with ``ensemble`` >= 2 its ensemble (forward
    selection of up to that many trials) is scored too and left in ``ensembles``."""
    from shoal.auto import AutoSettings, auto

    started = time.monotonic()
    result = auto(AutoSettings(data=task.train, label=task.label, valid=task.valid, test=task.test,
                               budget_s=budget_s, metric=task.metric, ensemble=ensemble), home)
    m = result.record.metrics
    state = result.record.summary["auto"]
    print(f"{task.name} shoal-auto selection: {state.get('selection')}", flush=True)
    keys = ("accuracy", "macro_f1") if task.text else ("auc", "ne")
    out = {k: m[f"test_{k}"] for k in keys if f"test_{k}" in m}
    test = (state.get("ensemble") or {}).get("test") or {}
    if ensembles is not None and test:
        ensembles[task.name] = {**{k: test[k] for k in keys if k in test},
                                "trials": float(len(state["ensemble"]["members"]))}
    return {**out, "train_s": time.monotonic() - started, "trials": len(result.leaderboard)}


def shoal_starter(task: Task, home: Path) -> dict[str, float]:
    import yaml

    import shoal
    from shoal.auto.files import file_spec
    from shoal.config import parse_config
    from shoal.inspect import inspect_file, starter_config

    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True)
    path = home / f"{task.name}-starter.yaml"
    path.write_text(starter_config(inspect_file(task.train, label=task.label), path))
    cfg = parse_config(yaml.safe_load(path.read_text()), base_dir=path.parent)
    update: dict[str, Any] = {"test": file_spec(task.test, cfg.data)}
    if task.valid is not None:
        update["valid"] = file_spec(task.valid, cfg.data)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update=update)})
    m = shoal.train(cfg, home=home).metrics
    keys = ("accuracy", "macro_f1") if task.text else ("auc", "ne")
    return {**{k: m[f"test_{k}"] for k in keys if f"test_{k}" in m}, "train_s": time.monotonic() - started,
            "trials": 1}


def sklearn_logistic(task: Task, frames: tuple[Any, Any, Any],
                     refits: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    import pandas as pd
    from pandas.api.types import is_numeric_dtype
    from sklearn.base import clone
    from sklearn.compose import make_column_transformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train, valid, test = frames
    started = time.monotonic()
    best: tuple[float, Any] | None = None
    for c in (0.1, 1.0, 10.0):
        if task.text:
            features: Any = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
            x_cols: Any = "text"
        else:
            cats = [c for c in train.columns if c != "y" and not is_numeric_dtype(train[c])]
            nums = [c for c in train.columns if c != "y" and c not in cats]
            features = make_column_transformer(
                (make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")), cats),
                (make_pipeline(SimpleImputer(), StandardScaler()), nums))
            x_cols = [c for c in train.columns if c != "y"]
        model = make_pipeline(features, LogisticRegression(C=c, max_iter=2000))
        model.fit(train[x_cols], train["y"])
        s = scores(task, valid["y"].to_numpy(), _proba(model, valid[x_cols], task), float(train["y"].mean()))
        key = s["accuracy"] if task.text else s["auc"]
        if best is None or key > best[0]:
            best = (key, model)
    assert best is not None
    p = _proba(best[1], test[x_cols], task)
    searched = time.monotonic() - started
    if refits is not None:  # the chosen C on the training and validation rows together
        both = pd.concat([train, valid], ignore_index=True)
        again = clone(best[1]).fit(both[x_cols], both["y"])
        refits["sklearn-logistic-refit"] = {
            **scores(task, test["y"].to_numpy(), _proba(again, test[x_cols], task), float(both["y"].mean())),
            "train_s": time.monotonic() - started, "trials": 3}
    return {**scores(task, test["y"].to_numpy(), p, float(train["y"].mean())), "train_s": searched, "trials": 3}


def _proba(model: Any, x: Any, task: Task) -> np.ndarray:
    """P(positive), or for text every class's probability (binary text: P(class 1))."""
    p = model.predict_proba(x)
    return p[:, 1] if p.shape[1] == 2 else p


def lightgbm_optuna(task: Task, frames: tuple[Any, Any, Any], budget_s: float,
                    refits: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    import lightgbm as lgb
    import optuna
    import pandas as pd
    from pandas.api.types import is_numeric_dtype

    train, valid, test = frames
    cols = [c for c in train.columns if c != "y"]

    def prep(f: Any) -> Any:
        x = f[cols].copy()
        for c in cols:
            if not is_numeric_dtype(x[c]):
                x[c] = x[c].astype("category").cat.set_categories(sorted(train[c].dropna().unique()))
        return x

    xt, xv, xs = prep(train), prep(valid), prep(test)
    started = time.monotonic()
    models: dict[int, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        params = {"learning_rate": trial.suggest_float("lr", 0.01, 0.3, log=True),
                  "num_leaves": trial.suggest_int("num_leaves", 7, 255, log=True),
                  "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
                  "colsample_bytree": trial.suggest_float("colsample", 0.4, 1.0),
                  "reg_lambda": trial.suggest_float("lambda", 1e-3, 10, log=True), "n_estimators": 2000,
                  "verbose": -1, "n_jobs": 2}
        model = lgb.LGBMClassifier(**params)
        model.fit(xt, train["y"], eval_set=[(xv, valid["y"])], callbacks=[lgb.early_stopping(50, verbose=False)])
        models[trial.number] = model
        return float(scores(task, valid["y"].to_numpy(), model.predict_proba(xv)[:, 1], train["y"].mean())["auc"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, timeout=budget_s)
    chosen = models[study.best_trial.number]
    p = chosen.predict_proba(xs)[:, 1]
    searched = time.monotonic() - started
    if refits is not None:  # its settings on the training and validation rows, its rounds scaled to them
        rounds = max(1, math.ceil((chosen.best_iteration_ or chosen.n_estimators) * (len(xt) + len(xv)) / len(xt)))
        again = lgb.LGBMClassifier(**{**chosen.get_params(), "n_estimators": rounds})
        again.fit(pd.concat([xt, xv]), pd.concat([train["y"], valid["y"]]))
        y = np.concatenate([train["y"].to_numpy(), valid["y"].to_numpy()])
        refits["lightgbm-optuna-refit"] = {
            **scores(task, test["y"].to_numpy(), again.predict_proba(xs)[:, 1], float(y.mean())),
            "train_s": time.monotonic() - started, "trials": len(study.trials)}
    return {**scores(task, test["y"].to_numpy(), p, float(train["y"].mean())),
            "train_s": searched, "trials": len(study.trials)}


def fasttext_autotune(task: Task, frames: tuple[Any, Any, Any], budget_s: float, work: Path) -> dict[str, float]:
    import fasttext

    paths = []
    for name, f in zip(("train", "valid"), frames[:2], strict=True):
        path = work / f"{task.name}-{name}.ft"
        path.write_text("".join(f"__label__{y} {t}\n" for y, t in zip(f["y"], f["text"], strict=True)))
        paths.append(path)
    started = time.monotonic()
    model = fasttext.train_supervised(str(paths[0]), autotuneValidationFile=str(paths[1]),
                                      autotuneDuration=int(budget_s), thread=2, verbose=0)
    test = frames[2]
    k = int(frames[0]["y"].max()) + 1
    labels, probs = model.predict([t.replace("\n", " ") for t in test["text"]], k=k)
    p = np.zeros((len(test), k))
    for i, (labs, prs) in enumerate(zip(labels, probs, strict=True)):
        for lab, pr in zip(labs, prs, strict=True):
            p[i, int(lab.removeprefix("__label__"))] = pr
    return {**scores(task, test["y"].to_numpy(), p, 0.5), "train_s": time.monotonic() - started}


_AUTOGLUON = """
import sys, pandas as pd
from autogluon.tabular import TabularPredictor
work, budget, metric = sys.argv[1], float(sys.argv[2]), sys.argv[3]
train, valid, test = (pd.read_parquet(f"{work}/{n}.parquet") for n in ("train", "valid", "test"))
predictor = TabularPredictor(label="y", eval_metric=metric, path=f"{work}/ag", verbosity=0).fit(
    train, tuning_data=valid, time_limit=budget, presets="medium_quality")
predictor.predict_proba(test.drop(columns="y")).to_parquet(f"{work}/proba.parquet")
"""


def autogluon(task: Task, frames: tuple[Any, Any, Any], budget_s: float, work: Path, python: str) -> dict[str, float]:
    """AutoGluon Tabular (medium_quality, the same time limit and splits) run by ``python``: an interpreter of its
    own virtual environment, since AutoGluon's pins do not sit beside our torch."""
    import subprocess

    import pandas as pd

    folder = work / f"ag-{task.name}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(("train", "valid", "test"), frames, strict=True):
        frame.to_parquet(folder / f"{name}.parquet")
    started = time.monotonic()
    metric = "accuracy" if task.text else "roc_auc"
    subprocess.run([python, "-c", _AUTOGLUON, str(folder), str(budget_s), metric], check=True)
    proba = pd.read_parquet(folder / "proba.parquet").to_numpy()
    p = proba[:, 1] if proba.shape[1] == 2 else proba  # columns: the classes in order (0, 1, ...)
    return {**scores(task, frames[2]["y"].to_numpy(), p, float(frames[0]["y"].mean())),
            "train_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--budget", default="10m", help="per system: 90s, 10m, ...")
    parser.add_argument("--quick", action="store_true", help="a 60 s budget")
    parser.add_argument("--datasets", default="criteo_small,adult_census,ag_news,sst2")
    parser.add_argument("--systems", default="shoal-auto,shoal-starter,lightgbm-optuna,sklearn-logistic,"
                                             "fasttext-autotune,autogluon")
    parser.add_argument("--home", type=Path, default=None,
                        help="keep shoal's registry here (trials, bundles, the auto runs' selection) instead of a "
                             "temporary folder")
    parser.add_argument("--ensemble", type=int, default=0,
                        help="also score shoal-auto's ensemble of up to K trials (system shoal-auto-ensemble)")
    parser.add_argument("--autogluon-python", default=None,
                        help="the python of a virtual environment with autogluon.tabular (else it is skipped)")
    args = parser.parse_args()
    from shoal.auto import parse_duration

    budget = 60.0 if args.quick else parse_duration(args.budget)
    systems = args.systems.split(",")
    rows: list[dict[str, Any]] = []
    ensembles: dict[str, dict[str, float]] = {}
    refits: dict[str, dict[str, float]] = {}  # a peer's refit on training + validation rows, by system
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.datasets.split(","):
            task = {"adult_census": adult, "criteo_small": criteo_small, "ag_news": ag_news, "sst2": sst2}[name](work)
            frames = read(task)
            runs: dict[str, Any] = {
                "shoal-auto": lambda t=task: shoal_auto(t, budget, args.home or work / "home", args.ensemble,
                                                        ensembles),
                "shoal-starter": lambda t=task: shoal_starter(t, args.home or work / "home"),
                "sklearn-logistic": lambda t=task, f=frames: sklearn_logistic(t, f, refits),
            }
            if args.autogluon_python:
                runs["autogluon"] = lambda t=task, f=frames: autogluon(t, f, budget, work, args.autogluon_python)
            if not task.text:
                runs["lightgbm-optuna"] = lambda t=task, f=frames: lightgbm_optuna(t, f, budget, refits)
            else:
                runs["fasttext-autotune"] = lambda t=task, f=frames: fasttext_autotune(t, f, budget, work)
            for system in (s for s in systems if s in runs):
                got = runs[system]()
                print(f"{name} {system}: {got}", flush=True)
                rows += [row(BENCH, name, system, k, v) for k, v in got.items()]
                for extra, got in sorted(refits.items()):
                    print(f"{name} {extra}: {got}", flush=True)
                    rows += [row(BENCH, name, extra, k, v) for k, v in got.items()]
                refits.clear()
                if system == "shoal-auto" and name in ensembles:
                    print(f"{name} shoal-auto-ensemble: {ensembles[name]}", flush=True)
                    rows += [row(BENCH, name, "shoal-auto-ensemble", k, v) for k, v in ensembles[name].items()]
    write_json(rows, args.json)
    print(markdown_table(rows, ("dataset", "system"), "metric"))


if __name__ == "__main__":
    main()
