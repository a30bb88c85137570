"""The search space: families by column kinds, every drawn config valid and buildable, sizes from the data."""

from __future__ import annotations

import random
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from shoal.auto import AutoSettings, auto, parse_duration
from shoal.auto.budget import Budget
from shoal.auto.files import file_spec, prepare, profile_data
from shoal.auto.search import _metric
from shoal.auto.space import BYTECNN_MIN_BUDGET_S, DataShape, Draw, Space, families
from shoal.cli.main import app
from shoal.config import DataConfig, FileSpec, parse_config
from shoal.models import build

WORDS = {"1": ["great", "good", "fine", "lovely", "superb"], "0": ["bad", "poor", "awful", "dull", "weak"]}


def _mixed_csv(path: Path, rows: int = 400, text_only: bool = False) -> Path:
    """A CSV with a label, a review text and (unless ``text_only``) a number and a category."""
    rng = random.Random(0)
    lines = ["label,review" if text_only else "label,age,city,review"]
    for i in range(rows):
        label = str(i % 2)
        words = [rng.choice(WORDS[label] if rng.random() < 0.6 else WORDS["1" if label == "0" else "0"])
                 for _ in range(rng.randint(4, 30))] + ["the", "film", "was"]
        text = " ".join(rng.sample(words, len(words)))
        lines.append(f"{label},{text}" if text_only else f"{label},{rng.randint(18, 80)},c{rng.randint(0, 40)},{text}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "10m", "1.5h", "1h30m")] == [90, 90, 600, 5400, 5400]
    with pytest.raises(ValueError, match="'ten' is not a duration; write e.g. 90s, 10m, 1h or 1h30m"):
        parse_duration("ten")


def test_metric_must_fit_the_label() -> None:
    assert _metric(None, False).name == "auc" and _metric(None, True).name == "accuracy"
    assert not _metric("ne", False).maximize
    with pytest.raises(ValueError, match="metric 'macro_f1' does not apply to a binary label; choose from auc, ne, "
                                         "accuracy"):
        _metric("macro_f1", False)


def test_a_trial_fits_the_time_left() -> None:
    now = [0.0]
    budget = Budget(100.0, start=0.0, clock=lambda: now[0])
    assert budget.epochs_that_fit("mlp", 10) == 10  # nothing measured yet: the trial's time cap decides
    budget.record("mlp", seconds=12.0, train_seconds=10.0, epochs=5)  # 2 s start-up, 2 s an epoch
    now[0] = 80.0  # 100 - 5 (reserve) - 80 = 15 s left
    assert budget.left() == pytest.approx(15.0)
    assert budget.epochs_that_fit("mlp", 10) == 6
    assert budget.epochs_that_fit("dlrm", 10) == 6  # unseen family: the others' costs
    now[0] = 94.0
    assert budget.epochs_that_fit("mlp", 10) == 0


def test_a_family_of_unknown_cost_is_probed_with_a_short_deadline() -> None:
    now = [0.0]
    budget = Budget(1000.0, start=0.0, clock=lambda: now[0])
    assert budget.trial_deadline("starter") == pytest.approx(340.0)  # the first trial: MAX_TRIAL_SHARE
    budget.record("starter", seconds=20.0, train_seconds=10.0, epochs=0.5)
    assert not budget.epoch_seen  # half an epoch: a trial too slow to end its first is not stopped yet
    budget.record("starter", seconds=20.0, train_seconds=10.0, epochs=5)
    assert budget.epoch_seen  # from now on it is, once its pace shows (shoal.auto.trial)
    assert budget.trial_deadline("starter") == pytest.approx(340.0)  # timed: the whole share
    assert budget.trial_deadline("bytecnn") == pytest.approx(125.0)  # not timed: a probe, PROBE_SHARE
    budget.record("mlp", seconds=80.0, train_seconds=70.0, epochs=7)
    assert budget.trial_deadline("bytecnn") == pytest.approx(160.0)  # twice the longest trial, when longer
    # the probe was stopped a fifth of the way through its first epoch: 100 s for 0.2 epochs, 500 s an epoch
    now[0] = 170.0
    budget.record("bytecnn", seconds=110.0, train_seconds=100.0, epochs=0.2)
    assert budget.estimate("bytecnn") == pytest.approx((10.0, 500.0))
    assert budget.epochs_that_fit("bytecnn", 8) == 0  # an epoch does not fit MAX_TRIAL_SHARE: not drawn again
    assert budget.trial_deadline("bytecnn") == pytest.approx(170.0 + 340.0)


@pytest.mark.parametrize("text_only", [False, True], ids=["mixed", "text"])
def test_every_family_draws_valid_configs(tmp_path: Path, text_only: bool) -> None:
    data = _mixed_csv(tmp_path / "reviews.csv", text_only=text_only)
    settings = AutoSettings(data=data, label="label", budget_s=BYTECNN_MIN_BUDGET_S)
    base, shape = prepare(profile_data(settings.data, settings.label), None, tmp_path)
    fams = families(shape, base, settings.budget_s)
    assert "bag" in fams and "bytecnn" in fams
    assert ("dlrm" in fams) == (not text_only)
    assert "bytecnn" not in families(shape, base, 60.0)
    assert shape.text_bytes["review"] > 20 and shape.rows == 400
    assert fams[0] == "starter"  # the starter config, unchanged, is the first trial
    space = Space(base, shape, fams, seed=0)
    starter = space.config(Draw(), "starter")
    assert starter.model_copy(update={"name": base.name}) == base.model_copy(
        update={"train": base.train.model_copy(update={"seed": 0})})
    # a logistic model's text weights are averaged over hundreds of n-grams: its rates start ten times higher
    assert space.config(Draw(), "logistic").train.embedding_lr == 1.0
    assert space.config(Draw(), "bag").train.embedding_lr == 0.1
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [space.config(Draw(), f) for f in fams] + [space.config(Draw(study.ask())) for _ in range(12)]
    for cfg in drawn:
        again = parse_config(cfg.resolved())  # every drawn config passes validation and survives YAML
        assert again == cfg
        assert cfg.data.test is None and cfg.train.seed == 0
        if cfg.name.endswith("-starter"):
            continue  # sized by the starter's own rules
        assert cfg.train.batch_size in shape.batch_sizes
        widths = [f.buckets for f in cfg.sparse]
        assert all(16 <= b <= 1_000_000 for b in widths)
        build(cfg.model, dense_dim=4, buckets=[16] * len(cfg.features), outputs=1,
              sequences=[i for i, f in enumerate(cfg.features) if getattr(f, "tokens", "") == "bytes"])


def test_sizes_follow_the_data() -> None:
    small, large = DataShape(rows=2_000, multiclass=False), DataShape(rows=2_000_000, multiclass=False)
    assert small.max_epochs > large.max_epochs
    assert max(small.batch_sizes) < min(large.batch_sizes)
    assert all(20 <= 2_000 / b <= 2_000 for b in small.batch_sizes)


def test_a_text_search_runs_end_to_end(tmp_path: Path) -> None:
    data = _mixed_csv(tmp_path / "reviews.csv", text_only=True)
    # the starter drawn again (here: enqueued) is skipped, not trained twice: three trials, the starter once; each
    # skipped draw is told PRUNED (TPE ignores a FAIL, and drew the starter thousands of times) and the next trial
    # is of another family
    result = auto(AutoSettings(data=data, label="label", budget_s=60, max_trials=3, families=("bag",), refit=False),
                  tmp_path / "home", enqueue=[{"family": "starter"}] * 2)
    families = [r.family for r in sorted(result.leaderboard, key=lambda r: r.number)]
    assert families == ["starter", "bag", "bag"], families
    import optuna

    study = optuna.load_study(study_name="auto", storage=f"sqlite:///{result.record.artifact_dir / 'optuna.db'}")
    skipped = [t for t in study.trials if "skipped" in t.user_attrs]
    assert [t.state for t in skipped] == [optuna.trial.TrialState.PRUNED] * 2
    assert [t.params["family"] for t in study.trials if t.state.is_finished()][:5] == [
        "starter", "bag", "starter", "starter", "bag"]
    assert all(r.state in ("complete", "pruned") for r in result.leaderboard)  # the median pruner may stop one
    assert result.best is not None and result.best.value > 0.65  # 40 validation rows: the signal is clear


def test_the_command_needs_a_label(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["auto", str(_mixed_csv(tmp_path / "r.csv")), "--home", str(tmp_path)])
    assert out.exit_code == 2
    assert "give the DATA file and its --label column (or --resume RUN to continue a search)" in out.output
    out = CliRunner().invoke(app, ["auto", "x.csv", "--label", "y", "--time-budget", "soon"])
    assert out.exit_code == 2 and "'soon' is not a duration" in out.output


def test_a_validation_file_naming_its_columns_differently_is_read_by_position(tmp_path: Path) -> None:
    train = _mixed_csv(tmp_path / "train.csv")
    other = tmp_path / "dev.csv"
    other.write_text("y,years,town,text\n" + "".join(train.read_text().splitlines(keepends=True)[1:50]))
    data = DataConfig(train=train)
    assert file_spec(train, data) == train
    assert file_spec(other, data) == FileSpec(path=other, columns=["label", "age", "city", "review"])
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("label,review\n1,good\n")
    with pytest.raises(ValueError, match=r"narrow.csv has the columns \['label', 'review'\], train.csv has "
                                         r"\['label', 'age', 'city', 'review'\]; give a file with the training file"):
        file_spec(narrow, data)


def test_dcn_v2_cross_layers_go_low_rank_on_a_wide_input(tmp_path: Path) -> None:
    """DCN-v2's rank is drawn (full, 16 or 64), and a full-rank draw on an input wider than
    FULL_RANK_MAX_WIDTH takes rank WIDE_RANK: 30 ids x 64 dimensions would be 3 x 1,920^2 weights."""
    from typing import Any

    from shoal.auto.space import FULL_RANK_MAX_WIDTH, WIDE_RANK

    rng = random.Random(0)
    lines = ["label," + ",".join(f"c{j}" for j in range(30))]
    lines += [f"{i % 2}," + ",".join(f"v{rng.randint(0, 50)}" for _ in range(30)) for i in range(300)]
    data = tmp_path / "wide.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    base, shape = prepare(profile_data(data, "label"), None, tmp_path)
    space = Space(base, shape, ["dcn_v2"], seed=0)

    class Wide(Draw):
        def choice(self, name: str, choices: Any, default: Any) -> Any:
            return super().choice(name, choices, 64 if name == "dcn_v2.embedding_dim" else default)

    narrow = space.config(Draw(), "dcn_v2").model
    assert narrow.low_rank is None and 30 * narrow.embedding_dim <= FULL_RANK_MAX_WIDTH  # type: ignore[union-attr]
    wide = space.config(Wide(), "dcn_v2").model
    assert wide.embedding_dim == 64 and wide.low_rank == WIDE_RANK  # type: ignore[union-attr]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    ranks = {space.config(Draw(study.ask()), "dcn_v2").model.low_rank for _ in range(30)}  # type: ignore[union-attr]
    assert {16, 64} <= ranks


def test_a_missing_or_empty_file_is_refused_before_a_run_exists(tmp_path: Path) -> None:
    from shoal.artifacts.registry import Registry
    from shoal.data.readers import BadInputError

    (tmp_path / "empty.csv").write_text("")
    data = _mixed_csv(tmp_path / "reviews.csv")
    for settings, message in ((AutoSettings(data=tmp_path / "missing.csv", label="label", budget_s=10),
                               "does not exist"),
                              (AutoSettings(data=tmp_path / "empty.csv", label="label", budget_s=10), "file is empty"),
                              (AutoSettings(data=data, label="label", valid=tmp_path / "no.csv", budget_s=10),
                               "no.csv: file does not exist")):
        with pytest.raises(BadInputError, match=message):
            auto(settings, tmp_path / "home")
    assert Registry(tmp_path / "home").list() == []  # no failed auto run left behind


LABEL_NEEDS = ("; a label is 2 values (binary), 3 to 64 classes, a number (regression) or tags; columns with 2 "
               "values: label")


@pytest.mark.parametrize(("args", "message"), [
    (["--label", "lable"], "label column 'lable' not found in {data}; the columns are: label, age, city, price, const, "
                           "kind, uid"),
    (["--label", "const"], "label column 'const' of d.csv has only one value ('7'): nothing to learn"
                           + LABEL_NEEDS),
    (["--label", "uid"], "label column 'uid' of d.csv has 80 distinct values that are not numbers: more than a "
                         "label's 64 classes" + LABEL_NEEDS),
    (["--label", "price", "--metric", "auc"], "metric 'auc' does not apply to a regression label; choose from rmse, "
                                              "mae, r2, nmse"),
    (["--label", "price", "--metric", "accuracy"], "metric 'accuracy' does not apply to a regression label"),
    (["--label", "kind", "--metric", "auc"], "metric 'auc' does not apply to a multiclass label; choose from accuracy, "
                                             "macro_f1, ne"),
    (["--label", "label", "--metric", "macro_f1"], "metric 'macro_f1' does not apply to a binary label; choose from "
                                                   "auc, ne, accuracy"),
    (["--label", "label", "--family", "bag"], "model families ['bag'] do not fit these columns (no text column) or "
                                              "are not registered; choose from logistic, mlp, dlrm, dcn_v2"),
], ids=["missing-column", "constant", "id", "auc-on-a-number", "accuracy-on-a-number", "auc-on-classes",
        "macro_f1-on-binary", "family-without-its-columns"])
def test_a_wrong_label_or_metric_is_refused_before_a_run_exists(tmp_path: Path, args: list[str], message: str) -> None:
    """One line naming what is valid, exit code 2, and no auto run (nor its folder) in the registry: DATA is profiled
    once, before the run is created."""
    from shoal.artifacts.registry import Registry

    rng = random.Random(0)
    lines = ["label,age,city,price,const,kind,uid"]
    lines += [f"{i % 2},{rng.randint(18, 80)},c{rng.randint(0, 9)},{rng.random() * 100:.4f},7,k{i % 4},u{i}"
              for i in range(80)]
    data = tmp_path / "d.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    home = tmp_path / "home"
    out = CliRunner().invoke(app, ["auto", str(data), *args, "--time-budget", "5s", "--home", str(home)])
    assert out.exit_code == 2, out.output
    assert f"error: {message.format(data=data)}" in out.output, out.output
    assert Registry(home).list() == [] and not any((home / "runs").iterdir())  # no failed auto run left behind
