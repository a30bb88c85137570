"""shoal.artifacts.refs.resolve: the one place a run reference (id, prefix, ``latest``, bundle folder) becomes a
bundle folder; every error message exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.artifacts.refs import Resolved, resolve
from shoal.artifacts.registry import AmbiguousRunError, Registry, RunNotFoundError, RunRecord


def _with_bundle(registry: Registry, name: str) -> RunRecord:
    record = registry.create_run(name, {})
    (record.artifact_dir / "bundle").mkdir()
    (record.artifact_dir / "bundle" / "bundle.json").write_text("{}", encoding="utf-8")
    return record


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_a_run_id_prefix_or_latest_gives_the_run_bundle(home: Path) -> None:
    registry = Registry(home)
    first = _with_bundle(registry, "first")
    last = _with_bundle(registry, "last")
    for ref, record in ((first.run_id, first), (first.run_id[:-1], first), ("latest", last), (last.run_id, last)):
        found = resolve(ref, home)
        assert found == Resolved(record.artifact_dir / "bundle", record.run_id, registry.get(record.run_id)), ref


def test_a_bundle_folder_is_taken_as_is(home: Path, tmp_path: Path) -> None:
    record = _with_bundle(Registry(home), "r")
    assert resolve(record.artifact_dir / "bundle", tmp_path / "elsewhere") == Resolved(
        record.artifact_dir / "bundle", record.run_id, None)  # a run folder's bundle: its run id, no registry read
    loose = tmp_path / "exported"
    loose.mkdir()
    (loose / "bundle.json").write_text("{}", encoding="utf-8")
    assert resolve(str(loose), home) == Resolved(loose, None, None)
    assert not (tmp_path / "elsewhere").exists()


def test_unknown_and_ambiguous_runs(home: Path) -> None:
    registry = Registry(home)
    a, b = _with_bundle(registry, "a"), _with_bundle(registry, "b")
    with pytest.raises(RunNotFoundError) as info:
        resolve("nope", home)
    assert str(info.value) == (f"no run matches 'nope' in {home}; most recent: {b.run_id}, {a.run_id} "
                               "(run `shoal runs` to list runs)")
    with pytest.raises(AmbiguousRunError, match="run prefix '2' is ambiguous"):
        resolve("2", home)


def test_no_registry_says_where_it_looked(tmp_path: Path) -> None:
    home = tmp_path / "nohome"
    with pytest.raises(FileNotFoundError) as info:
        resolve("latest", home)
    assert str(info.value) == (f"'latest' is not a bundle folder, and {home} holds no registry to look it up in; "
                               "pass a bundle folder, or the registry with --home")
    assert not home.exists()  # a typo in --home creates nothing


def test_a_path_that_is_no_bundle_folder(home: Path, tmp_path: Path) -> None:
    Registry(home)
    for ref in (tmp_path, "some/where"):
        with pytest.raises(FileNotFoundError) as info:
            resolve(ref, home)
        assert str(info.value) == f"{ref}: not a shoal bundle folder (no bundle.json); pass a run id or a bundle folder"


def test_a_run_without_a_bundle_says_how_to_finish_it(home: Path) -> None:
    record = Registry(home).create_run("killed", {})
    with pytest.raises(FileNotFoundError) as info:
        resolve(record.run_id, home)
    assert str(info.value) == (f"run {record.run_id} has no bundle (status running); "
                               f"finish it with `shoal train --resume {record.run_id}`")
