"""Named models: versions of runs, aliases moved atomically, references resolved everywhere a RUN is taken."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import shoal
from shoal.artifacts.models import ModelNotFoundError, ModelRegistry, is_model_ref
from shoal.artifacts.refs import resolve
from shoal.artifacts.registry import Registry
from shoal.cli import main as cli
from shoal.cli.main import app


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    home = tmp_path_factory.mktemp("home")
    rng = np.random.default_rng(0)
    ids = []
    for seed in (0, 1):
        x = rng.normal(size=600)
        df = pd.DataFrame({"x": x, "g": rng.choice(["a", "b"], 600), "y": (x + rng.normal(size=600) > 0).astype(int)})
        ids.append(shoal.fit(df, label="y", home=home, model="logistic", train__epochs=1, train__seed=seed,
                            train__pictures=False).run_id)
    return home, ids


def test_register_alias_resolve(two_runs: tuple[Path, list[str]], tmp_path: Path) -> None:
    home, (first, second) = two_runs
    models = ModelRegistry(home)
    v1 = models.register("ctr-feed", first, alias="production")
    v2 = models.register("ctr-feed", second[:-2], alias="staging", note="more data")  # a prefix
    assert (v1.version, v2.version, v2.run_id, v2.ref) == (1, 2, second, "ctr-feed@v2")
    assert models.resolve("ctr-feed@production").run_id == first
    assert models.resolve("ctr-feed").run_id == second  # no selector: the newest version
    assert models.resolve("ctr-feed@v1").run_id == models.resolve("ctr-feed@1").run_id == first
    assert models.set_alias("ctr-feed", "production", 2) == 1  # moved; returns where it pointed before
    assert models.resolve("ctr-feed@production").version == 2
    assert [v.aliases for v in models.versions("ctr-feed")] == [(), ("production", "staging")]
    # every RUN argument takes a model reference: resolve (eval, export, serve, predict) and load_model
    assert resolve("ctr-feed@production", home).run_id == second
    assert shoal.load_model("ctr-feed@v1", home=home).run_id == first
    models.delete_alias("ctr-feed", "staging")
    with pytest.raises(ModelNotFoundError, match=r"has no 'staging': versions v1..v2, aliases production->v2"):
        models.resolve("ctr-feed@staging")
    with pytest.raises(ModelNotFoundError, match="no model 'nope'; models: ctr-feed"):
        models.resolve("nope@production")
    with pytest.raises(ModelNotFoundError, match="no model is registered"):
        ModelRegistry(tmp_path).resolve("ctr-feed@production")
    assert not (tmp_path / "registry.db").exists()  # reading never creates a registry


def test_names_and_refs_are_checked(two_runs: tuple[Path, list[str]]) -> None:
    home, (first, _) = two_runs
    models = ModelRegistry(home)
    for bad in ("2026-model", "latest", "a b", ""):
        with pytest.raises(ValueError, match="not allowed"):
            models.register(bad, first)
    with pytest.raises(ValueError, match="reads as a version"):
        models.set_alias("ctr-feed", "v3", 1)
    assert is_model_ref("ctr-feed@production") and is_model_ref("ctr") and not is_model_ref("20261205-1")
    assert not is_model_ref("latest") and not is_model_ref("runs/x/bundle")


def test_concurrent_registrations_get_distinct_versions(two_runs: tuple[Path, list[str]]) -> None:
    home, (first, _) = two_runs
    got: list[int] = []
    lock = threading.Lock()

    def add() -> None:
        for _ in range(5):
            v = ModelRegistry(home).register("busy", first)
            with lock:
                got.append(v.version)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 21))


def test_cli(two_runs: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "_width", 200)
    home, (first, second) = two_runs
    runner = CliRunner()
    out = runner.invoke(app, ["register", first, "search", "--alias", "staging", "--home", str(home)])
    assert out.exit_code == 0 and "as search@v1; search@staging -> v1" in out.output
    assert runner.invoke(app, ["register", second, "search", "--home", str(home)]).exit_code == 0
    out = runner.invoke(app, ["alias", "search@staging", "v2", "--home", str(home)])
    assert out.exit_code == 0 and "search@staging -> v2 (was v1)" in out.output
    out = runner.invoke(app, ["models", "search", "--home", str(home)])
    assert out.exit_code == 0 and "staging" in out.output and second in out.output and "auc" in out.output
    out = runner.invoke(app, ["eval", "search@staging", "--data", str(Registry(home).get(second).config["data"]
                                                                        ["train"]), "--home", str(home)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["alias", "search@prod", "v9", "--home", str(home)])
    assert out.exit_code == 2 and "has no 'v9'" in out.output and "Traceback" not in out.output


def test_gc_frees_resume_files_by_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shoal.artifacts.gc import RESUME_FILES, plan_gc

    monkeypatch.setattr(cli.console, "_width", 200)
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    df = pd.DataFrame({"x": x, "y": (x > 0).astype(int)})
    ids = [shoal.fit(df, label="y", home=tmp_path, model="logistic", train__epochs=1, train__seed=s,
                     train__checkpoint_every=2, train__pictures=False).run_id
           for s in range(4)]  # oldest first
    registry = Registry(tmp_path)
    registry.fail(ids[1], RuntimeError("killed in a test"))
    ModelRegistry(tmp_path).register("keep-me", ids[0])
    folder = {i: registry.get(i).artifact_dir for i in ids}
    assert (folder[ids[2]] / "checkpoint.pt").is_file()

    plan = plan_gc(tmp_path, keep_last=1, failed=True)
    assert {i.run_id for i in plan.items} == {ids[1], ids[2]} and plan.bytes > 0
    assert plan.kept == {ids[3]: "one of the 1 most recent runs", ids[0]: "registered as keep-me@v1"}
    runner = CliRunner()
    dry = runner.invoke(app, ["gc", "--keep-last", "1", "--failed", "--home", str(tmp_path)])
    assert dry.exit_code == 0 and "would delete" in dry.output and "nothing deleted" in dry.output
    assert (folder[ids[2]] / "checkpoint.pt").is_file()  # a dry run deletes nothing
    done = runner.invoke(app, ["gc", "--keep-last", "1", "--failed", "--yes", "--home", str(tmp_path)])
    assert done.exit_code == 0 and "freed" in done.output, done.output
    assert not any((folder[ids[2]] / f).exists() for f in RESUME_FILES)
    assert (folder[ids[2]] / "bundle" / "bundle.json").is_file()  # a finished run keeps its bundle
    assert not any(folder[ids[1]].iterdir())  # a failed run's files are gone, its row stays
    assert registry.get(ids[1]).status == "failed"
    assert (folder[ids[0]] / "checkpoint.pt").is_file() and (folder[ids[3]] / "checkpoint.pt").is_file()
    assert shoal.load_model(ids[2], home=tmp_path).predict_proba({"x": 1.0}).shape == (1,)


def test_model_card(two_runs: tuple[Path, list[str]], tmp_path: Path) -> None:
    from shoal.artifacts.card import model_card

    home, (first, _) = two_runs
    ModelRegistry(home).register("carded", first, alias="production", note="first try")
    text = model_card("carded@production", home)
    record = Registry(home).get(first)
    data = record.summary["lineage"]["data"]["train"]
    assert text.startswith("# Model card: carded v1") and "aliases: `production`" in text and "first try" in text
    assert data["sha256"] in text and len(data["sha256"]) == 64  # the exact rows it learned from
    assert "| auc |" in text and f"{record.metrics['valid_auc']:.4f}" in text
    assert "## Latency" in text and "Not measured" in text and "| x | dense |" in text
    out = tmp_path / "card.md"
    result = CliRunner().invoke(app, ["card", "carded@production", "--out", str(out), "--home", str(home)])
    assert result.exit_code == 0 and out.read_text() == text
    assert model_card(first[:-3], home).startswith(f"# Model card: run {first}")  # a run works too
