"""``SynthSpec.tasks`` / ``shoal synth --tasks``: a click log with post-click events and each task's Bayes truth."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import log_loss, roc_auc_score
from typer.testing import CliRunner

from shoal.cli import main as cli
from shoal.cli.main import app
from shoal.data import synthetic as syn
from shoal.data.synthetic import SynthSpec, SynthTruth, TaskTruth, generate, load_truth, truth_path
from shoal.data.synthetic import tasks as post_click

PLAIN = SynthSpec(rows=6_000, dense=3, sparse=5, max_cardinality=1_000, chunk_rows=2_500, seed=11, base_rate=0.1)
TASKS = replace(PLAIN, tasks=("click", "conversion"))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, pa.Table, SynthTruth, Path]:
    """The same spec without and with tasks, generated once."""
    folder = tmp_path_factory.mktemp("tasks")
    generate(folder / "plain.parquet", PLAIN)
    truth = generate(folder / "tasks.parquet", TASKS)
    return pq.read_table(folder / "plain.parquet"), pq.read_table(folder / "tasks.parquet"), truth, folder


def test_columns_types_and_the_click_is_the_label(logs: tuple[pa.Table, pa.Table, SynthTruth, Path]) -> None:
    plain, with_tasks, _, _ = logs
    assert with_tasks.column_names == ["click", "conversion", *plain.column_names[1:]]
    assert with_tasks.schema.field("click").type == pa.int8()
    assert with_tasks.schema.field("conversion").type == pa.int8()
    # the first task is the label column renamed, and no feature changes
    assert with_tasks["click"].equals(plain["label"])
    assert with_tasks.drop(["click", "conversion"]).equals(plain.drop(["label"]))
    click, conversion = with_tasks["click"].to_numpy(), with_tasks["conversion"].to_numpy()
    assert set(np.unique(conversion)) == {0, 1}
    assert not (conversion > click).any()  # a conversion only follows a click


def test_default_output_has_one_label_and_no_task_truth(logs: tuple[pa.Table, pa.Table, SynthTruth, Path]) -> None:
    plain, _, truth, folder = logs
    assert plain.column_names[0] == "label" and "conversion" not in plain.column_names
    data = json.loads(truth_path(folder / "plain.parquet").read_text())
    assert "tasks" not in data and load_truth(folder / "plain.parquet").tasks == ()
    # the first task's truth is the top-level truth, the one the plain log has
    assert truth.task("click") == TaskTruth("click", truth.base_rate, truth.bayes_auc, truth.bayes_logloss,
                                            truth.bayes_ne)
    assert truth.bayes_auc == data["bayes_auc"] and truth.bayes_ne == data["bayes_ne"]


def test_deterministic_and_each_task_has_its_own_stream(tmp_path: Path) -> None:
    spec = replace(TASKS, rows=2_000)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert generate(a, spec).to_json() == generate(b, spec).to_json()
    assert a.read_bytes() == b.read_bytes()
    three = tmp_path / "three.parquet"
    generate(three, replace(spec, tasks=("click", "conversion", "purchase")))
    wide, narrow = pq.read_table(three), pq.read_table(a)
    assert wide.column_names[:3] == ["click", "conversion", "purchase"]
    assert wide["conversion"].equals(narrow["conversion"])  # adding a task does not redraw the others
    assert not wide["purchase"].equals(wide["conversion"])


@pytest.mark.parametrize("task_rate", [0.1, 0.3])
def test_rate_among_clicks_is_the_requested_one(tmp_path: Path, task_rate: float) -> None:
    spec = replace(TASKS, rows=40_000, chunk_rows=40_000, task_rate=task_rate)
    truth = generate(tmp_path / "log.parquet", spec)
    table = pq.read_table(tmp_path / "log.parquet")
    click, conversion = table["click"].to_numpy(), table["conversion"].to_numpy()
    assert abs(click.mean() - 0.1) < 0.015
    assert abs(conversion.sum() / click.sum() - task_rate) < 0.15 * task_rate
    assert truth.task("conversion").base_rate == pytest.approx(conversion.mean())
    assert truth.task("conversion").base_rate < truth.task("click").base_rate  # the sparser task


def test_bayes_truth_per_task_recomputed_from_the_planted_probabilities(
    logs: tuple[pa.Table, pa.Table, SynthTruth, Path],
) -> None:
    _, table, truth, folder = logs
    params = syn._params(TASKS)
    bias = syn._bias(TASKS, params)
    (task_bias,) = post_click._task_biases(TASKS, params, bias)
    p_click, p_both = [], []
    for chunk, start in enumerate(range(0, TASKS.rows, TASKS.chunk_rows)):
        n = min(TASKS.chunk_rows, TASKS.rows - start)
        sample = syn._sample(np.random.default_rng([TASKS.seed, 1, chunk]), TASKS, params, n)
        planted = syn._logit(sample, params)
        cvr = syn._sigmoid(task_bias + post_click._task_logit(sample, params, planted, 1))
        p_click.append(syn._sigmoid(bias + planted))
        p_both.append(p_click[-1] * cvr)  # P(conversion written as 1) = P(click) * P(conversion | click)
    for name, probs in (("click", np.concatenate(p_click)), ("conversion", np.concatenate(p_both))):
        labels = table[name].to_numpy()
        got = truth.task(name)
        q = labels.mean()
        assert got.base_rate == q
        assert got.bayes_auc == pytest.approx(roc_auc_score(labels, probs), abs=1e-9)
        assert got.bayes_logloss == pytest.approx(log_loss(labels, probs), rel=1e-9)
        assert got.bayes_ne == pytest.approx(got.bayes_logloss / -(q * math.log(q) + (1 - q) * math.log(1 - q)))
    # the JSON holds the same numbers, in the order of the tasks
    assert load_truth(folder / "tasks.parquet") == truth
    data = json.loads(truth_path(folder / "tasks.parquet").read_text())
    assert [t["name"] for t in data["tasks"]] == ["click", "conversion"]
    assert data["tasks"][1]["bayes_auc"] == truth.task("conversion").bayes_auc
    assert data["spec"]["tasks"] == ["click", "conversion"]


def test_the_event_shares_part_of_the_click_structure() -> None:
    """Correlated with the click's logit (so sharing helps) but not a copy of it (the task has its own effects)."""
    spec = replace(TASKS, rows=1)
    params = syn._params(spec)
    sample = syn._sample(np.random.default_rng(0), spec, params, 20_000)
    planted = syn._logit(sample, params)
    corr = np.corrcoef(planted, post_click._task_logit(sample, params, planted, 1))[0, 1]
    assert 0.6 < corr < 0.97
    own_1, own_2 = post_click._own_logit(sample, params, 1), post_click._own_logit(sample, params, 2)
    assert abs(np.corrcoef(own_1, own_2)[0, 1]) < 0.3  # each further task has effects of its own


@pytest.mark.parametrize(
    ("tasks", "target", "message"),
    [
        (("click",), None, "must name two or more tasks"),
        (("click", ""), None, "task 2 has an empty name"),
        (("click", " "), None, "task 2 has an empty name"),
        (("click", "click"), None, "task names must be distinct, 'click' is given 2 times"),
        (("click", "s4"), None, "task 's4' collides with a feature column (d0.., s0..)"),
        (("d0", "conversion"), None, "task 'd0' collides with a feature column"),
        (("click", "amount"), "amount", "task 'amount' is also the numeric target's name"),
        ("click,conversion", None, "must be a tuple of task names"),
    ],
)
def test_bad_tasks_say_what_is_wrong(tasks: object, target: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=r"SynthSpec\.tasks=") as info:
        replace(PLAIN, tasks=tasks, target=target)
    assert message in str(info.value)


def test_bad_task_rate_and_target_named_like_a_task() -> None:
    with pytest.raises(ValueError, match=r"SynthSpec\.task_rate=1\.0 is invalid: must satisfy 0 < task_rate < 1"):
        replace(TASKS, task_rate=1.0)
    with pytest.raises(ValueError, match=r"SynthSpec\.target='label' is invalid"):
        replace(TASKS, target="label")
    assert replace(PLAIN, tasks=["click", "conversion"]).tasks == ("click", "conversion")  # a list, e.g. from JSON


def test_cli_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "_width", 200)
    runner = CliRunner()
    out = tmp_path / "log.parquet"
    args = ["synth", str(out), "--rows", "3000", "--dense", "2", "--sparse", "4", "--max-cardinality", "200",
            "--base-rate", "0.2"]
    result = runner.invoke(app, [*args, "--tasks", "click, conversion", "--task-rate", "0.2"])
    assert result.exit_code == 0, result.output
    truth = load_truth(out)
    assert [t.name for t in truth.tasks] == ["click", "conversion"] and truth.spec["task_rate"] == 0.2
    for task in truth.tasks:
        assert f"{task.name}: base rate {task.base_rate:.4f}" in result.output
        assert f"Bayes-optimal AUC {task.bayes_auc:.4f}, NE {task.bayes_ne:.4f}" in result.output
    for bad, message in [("click", "must name two or more tasks"), ("click,,buy", "task 2 has an empty name"),
                         ("click,click", "must be distinct"), ("click,d1", "collides with a feature column")]:
        result = runner.invoke(app, [*args, "--tasks", bad])
        assert result.exit_code == 2 and message in result.output, result.output
    result = runner.invoke(app, [*args, "--tasks", "click,amount", "--target", "amount"])
    assert result.exit_code == 2 and "also the numeric target's name" in result.output
