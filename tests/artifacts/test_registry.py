"""Tests for shoal.artifacts.registry: CRUD, lookup by reference, error messages, home resolution, concurrency."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import re
import runpy
import sqlite3
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shoal.artifacts.registry as registry_module
from shoal.artifacts.registry import (
    STATUSES,
    AmbiguousRunError,
    Registry,
    RegistryError,
    RunKind,
    RunNotFoundError,
    RunRecord,
    RunStatus,
    resolve_home,
)

RUN_ID_RE = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "home")


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make run ids deterministic: create_run takes ids from the returned list, in order."""
    queue: list[str] = []

    def fake_new_run_id(now: float) -> str:
        return queue.pop(0)

    monkeypatch.setattr(registry_module, "_new_run_id", fake_new_run_id)
    yield queue


# ---------------------------------------------------------------------------- create / get


def test_create_run_and_get(reg: Registry) -> None:
    before = time.time()
    rec = reg.create_run("baseline", {"lr": 0.01, "layers": [64, 32]})
    assert RUN_ID_RE.match(rec.run_id), rec.run_id
    assert rec.name == "baseline"
    assert rec.kind == "train"
    assert rec.status == "running"
    assert rec.config == {"lr": 0.01, "layers": [64, 32]}
    assert rec.metrics == {} and rec.summary == {}
    assert rec.parent is None
    assert before <= rec.created_at == rec.updated_at <= time.time()
    assert rec.finished_at is None and not rec.finished
    assert rec.artifact_dir == reg.home / "runs" / rec.run_id
    assert rec.artifact_dir.is_dir()
    assert reg.get(rec.run_id) == rec


def test_kind_and_parent(reg: Registry) -> None:
    teacher = reg.create_run("teacher", {})
    student = reg.create_run("student", {"temperature": 2.0}, kind="distill", parent=teacher.run_id)
    got = reg.get(student.run_id)
    assert got.kind == "distill"
    assert got.parent == teacher.run_id


def test_records_are_frozen(reg: Registry) -> None:
    rec = reg.create_run("r", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.status = "failed"  # type: ignore[misc]


def test_create_run_validates_arguments(reg: Registry) -> None:
    with pytest.raises(ValueError, match="name"):
        reg.create_run("", {})
    with pytest.raises(ValueError, match="kind"):
        reg.create_run("r", {}, kind="")
    with pytest.raises(TypeError, match="config cannot be stored as JSON"):
        reg.create_run("r", {"fn": object()})
    assert reg.list() == []
    assert list((reg.home / "runs").iterdir()) == []


def test_get_by_prefix_latest_and_ambiguity(reg: Registry, fixed_ids: list[str]) -> None:
    fixed_ids.extend(["20240101-000000-aaaaaa", "20240101-000000-aaaabb", "20240101-000001-cccccc"])
    a = reg.create_run("a", {})
    b = reg.create_run("b", {})
    c = reg.create_run("c", {})
    assert reg.get("20240101-000000-aaaaaa") == a  # exact
    assert reg.get("20240101-000000-aaaab") == b  # unique prefix
    assert reg.get("20240101-000001") == c
    assert reg.get("  20240101-000001-cccccc\n") == c  # surrounding whitespace ignored
    assert reg.get("latest") == c

    with pytest.raises(AmbiguousRunError) as info:
        reg.get("20240101-000000-aaaa")
    msg = str(info.value)
    assert "ambiguous" in msg and a.run_id in msg and b.run_id in msg and c.run_id not in msg
    with pytest.raises(AmbiguousRunError) as info:
        reg.get("2024")
    assert all(r.run_id in str(info.value) for r in (a, b, c))
    assert isinstance(info.value, RegistryError)


def test_exact_id_wins_over_longer_ids_sharing_it_as_prefix(reg: Registry, fixed_ids: list[str]) -> None:
    fixed_ids.extend(["20240101-000000-abc", "20240101-000000-abcdef"])
    short = reg.create_run("short", {})
    reg.create_run("long", {})
    assert reg.get("20240101-000000-abc") == short


def test_not_found_lists_recent_ids(reg: Registry) -> None:
    runs = [reg.create_run(f"r{i}", {}) for i in range(7)]
    with pytest.raises(RunNotFoundError) as info:
        reg.get("nope")
    msg = str(info.value)
    assert msg.startswith("no run matches 'nope'")
    for rec in runs[-5:]:
        assert rec.run_id in msg
    for rec in runs[:2]:
        assert rec.run_id not in msg
    assert "run `shoal runs`" in msg
    # It is a KeyError too, but without KeyError's quoting of the message.
    assert isinstance(info.value, KeyError) and isinstance(info.value, RegistryError)
    assert not msg.startswith('"') and not msg.startswith("'")


def test_not_found_in_empty_registry(reg: Registry) -> None:
    for ref in ("latest", "abc", ""):
        with pytest.raises(RunNotFoundError, match="has no runs yet"):
            reg.get(ref)


def test_empty_ref_is_not_a_prefix_of_everything(reg: Registry) -> None:
    reg.create_run("a", {})
    reg.create_run("b", {})
    with pytest.raises(RunNotFoundError):
        reg.get("")


# ---------------------------------------------------------------------------- update


def test_update_merges_metrics_and_summary(reg: Registry) -> None:
    rec = reg.create_run("r", {"x": 1})
    reg.update(rec.run_id, metrics={"auc": 0.7, "epoch": 1}, summary={"rows_read": 100})
    reg.update(rec.run_id, metrics={"ne": 0.9})
    out = reg.update(rec.run_id, metrics={"auc": 0.75, "epoch": 2}, summary={"quarantined": 3})
    assert out.metrics == {"auc": 0.75, "epoch": 2, "ne": 0.9}
    assert out.summary == {"rows_read": 100, "quarantined": 3}
    assert out.config == {"x": 1}
    assert out.status == "running"
    assert out.updated_at >= rec.updated_at
    assert reg.get(rec.run_id) == out


def test_update_status_and_finished(reg: Registry) -> None:
    rec = reg.create_run("r", {})
    mid = reg.update(rec.run_id, status="running")
    assert mid.finished_at is None
    done = reg.update(rec.run_id, status="completed", finished=True)
    assert done.status == "completed"
    assert done.finished_at is not None and done.finished_at >= rec.created_at
    # A later update without finished=True keeps the original finish time.
    later = reg.update(rec.run_id, summary={"note": "post-hoc eval"})
    assert later.finished_at == done.finished_at
    assert later.status == "completed"


def test_update_rejects_bad_status_without_writing(reg: Registry) -> None:
    rec = reg.create_run("r", {})
    with pytest.raises(ValueError) as info:
        reg.update(rec.run_id, status="done", metrics={"auc": 1.0})
    assert str(info.value) == "invalid run status 'done'; allowed: running, completed, failed, killed"
    assert reg.get(rec.run_id) == rec


def test_update_unknown_run(reg: Registry) -> None:
    rec = reg.create_run("r", {})
    with pytest.raises(RunNotFoundError) as info:
        reg.update("20000101-000000-000000", status="failed")
    assert rec.run_id in str(info.value)
    # update takes exact ids only, never prefixes
    with pytest.raises(RunNotFoundError):
        reg.update(rec.run_id[:10], status="failed")


def test_json_columns_accept_numpy_nan_and_paths(reg: Registry) -> None:
    rec = reg.create_run("r", {"out": Path("/tmp/x"), "dims": np.array([1, 2])})
    out = reg.update(
        rec.run_id,
        metrics={"auc": float("nan"), "logloss": np.float32(0.5), "rows": np.int64(10)},
        summary={"counts": {"read": np.int32(3)}},
    )
    assert out.config == {"out": "/tmp/x", "dims": [1, 2]}
    assert np.isnan(out.metrics["auc"])
    assert out.metrics["logloss"] == 0.5 and out.metrics["rows"] == 10
    assert type(out.metrics["rows"]) is int
    assert out.summary == {"counts": {"read": 3}}
    with pytest.raises(TypeError, match="metrics cannot be stored as JSON"):
        reg.update(rec.run_id, metrics={"bad": object()})


def test_json_stored_with_sorted_keys(reg: Registry) -> None:
    rec = reg.create_run("r", {"b": 1, "a": {"d": 1, "c": 2}})
    with sqlite3.connect(reg.db_path) as conn:
        (config,) = conn.execute("SELECT config FROM runs WHERE run_id = ?", (rec.run_id,)).fetchone()
    assert config == '{"a": {"c": 2, "d": 1}, "b": 1}'


# ---------------------------------------------------------------------------- list


def test_list_newest_first_limit_and_status(reg: Registry) -> None:
    runs = [reg.create_run(f"r{i}", {}) for i in range(6)]
    reg.update(runs[1].run_id, status="failed", finished=True)
    reg.update(runs[4].run_id, status="failed", finished=True)
    listed = reg.list()
    assert [r.run_id for r in listed] == [r.run_id for r in reversed(runs)]
    assert [r.run_id for r in reg.list(limit=2)] == [runs[5].run_id, runs[4].run_id]
    assert [r.run_id for r in reg.list(status="failed")] == [runs[4].run_id, runs[1].run_id]
    assert reg.list(status="killed") == []
    with pytest.raises(ValueError, match="allowed: running, completed, failed, killed"):
        reg.list(status="bogus")
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="limit must be a positive integer"):
            reg.list(limit=bad)


# ---------------------------------------------------------------------------- ids, schema, persistence


def test_run_id_collision_is_retried(reg: Registry, fixed_ids: list[str]) -> None:
    fixed_ids.extend(["20240101-000000-aaaaaa", "20240101-000000-aaaaaa", "20240101-000000-bbbbbb"])
    first = reg.create_run("a", {})
    second = reg.create_run("b", {})
    assert (first.run_id, second.run_id) == ("20240101-000000-aaaaaa", "20240101-000000-bbbbbb")
    assert reg.get(first.run_id).name == "a"


def test_run_id_exhaustion_raises(reg: Registry, fixed_ids: list[str]) -> None:
    fixed_ids.extend(["20240101-000000-aaaaaa"] * 10)
    reg.create_run("a", {})
    with pytest.raises(RegistryError, match="unique run id"):
        reg.create_run("b", {})


def test_real_run_ids_are_unique_and_sortable() -> None:
    ids = [registry_module._new_run_id(1_700_000_000.0 + i) for i in range(200)]
    assert all(RUN_ID_RE.match(i) for i in ids)
    assert ids[0].startswith("20231114-221320-")  # UTC
    assert [i[:15] for i in ids] == sorted(i[:15] for i in ids)


def test_reopen_persists_and_schema_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "nested" / "home"
    rec = Registry(home).create_run("r", {"a": 1})
    again = Registry(home)
    assert again.get(rec.run_id) == rec
    Registry(home)
    with sqlite3.connect(home / "registry.db") as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert repr(again) == f"Registry({str(home)!r})"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Registry(tmp_path)
    with sqlite3.connect(tmp_path / "registry.db") as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(RegistryError, match="schema version 99"):
        Registry(tmp_path)


def test_corrupt_database_gives_registry_error(tmp_path: Path) -> None:
    (tmp_path / "registry.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RegistryError, match="registry.db"):
        Registry(tmp_path)


def _flaky_connect(monkeypatch: pytest.MonkeyPatch, message: str, failures: int) -> dict[str, int]:
    """Make the next ``failures`` WAL switches raise ``OperationalError(message)``."""
    left = {"n": failures}

    class FlakyConnection(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql.startswith("PRAGMA journal_mode=WAL") and left["n"] > 0:
                left["n"] -= 1
                raise sqlite3.OperationalError(message)
            return super().execute(sql, *args)

    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return real_connect(*args, factory=FlakyConnection, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    return left


def test_enabling_wal_retries_while_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite can report "database is locked" for a journal-mode switch without waiting on its busy
    # handler (seen when several processes initialise one fresh home); Registry retries instead.
    left = _flaky_connect(monkeypatch, "database is locked", failures=3)
    reg = Registry(tmp_path)
    assert left["n"] == 0
    assert reg.create_run("r", {}).status == "running"


def test_enabling_wal_does_not_retry_other_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    left = _flaky_connect(monkeypatch, "disk I/O error", failures=3)
    with pytest.raises(RegistryError, match="disk I/O error"):
        Registry(tmp_path)
    assert left["n"] == 2


def test_waits_for_a_writer_holding_the_lock(tmp_path: Path) -> None:
    Registry(tmp_path).create_run("first", {})
    blocker = sqlite3.connect(tmp_path / "registry.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    results: list[RunRecord] = []
    thread = threading.Thread(target=lambda: results.append(Registry(tmp_path).create_run("second", {})))
    thread.start()
    time.sleep(0.3)
    assert results == []  # still waiting on the lock (busy_timeout), not failed
    blocker.execute("COMMIT")
    blocker.close()
    thread.join(timeout=30)
    assert [r.name for r in results] == ["second"]


def test_statuses_constant() -> None:
    assert STATUSES == ("running", "completed", "failed", "killed")


# ---------------------------------------------------------------------------- kinds and a run's status


def test_kind_and_status_are_typed_and_stored_as_their_strings(reg: Registry) -> None:
    rec = reg.create_run("student", {}, kind=RunKind.DISTILL)
    assert rec.kind is RunKind.DISTILL and rec.status is RunStatus.RUNNING
    assert reg.create_run("plain", {}, kind="compress").kind is RunKind.COMPRESS
    with closing(sqlite3.connect(reg.db_path)) as conn:
        row = conn.execute("SELECT kind, status FROM runs WHERE run_id = ?", (rec.run_id,)).fetchone()
    assert row == ("distill", "running") and type(row[0]) is str
    assert json.dumps({"kind": rec.kind, "status": rec.status}) == '{"kind": "distill", "status": "running"}'


def test_an_unknown_kind_is_refused(reg: Registry) -> None:
    with pytest.raises(ValueError) as info:
        reg.create_run("r", {}, kind="eval")
    assert str(info.value) == "invalid run kind 'eval'; allowed: train, distill, compress, auto"


def test_recording_marks_a_failed_run_with_its_error_and_traceback(reg: Registry) -> None:
    rec = reg.create_run("r", {})
    with pytest.raises(ZeroDivisionError), reg.recording(rec.run_id):
        1 / 0  # noqa: B018
    out = reg.get(rec.run_id)
    assert out.status is RunStatus.FAILED and out.finished
    assert out.summary["error"] == "ZeroDivisionError: division by zero"
    assert out.summary["traceback"].startswith("Traceback (most recent call last):")
    assert "1 / 0" in out.summary["traceback"]


def test_recording_marks_an_interrupted_run_killed(reg: Registry) -> None:
    rec = reg.create_run("r", {})
    with pytest.raises(KeyboardInterrupt), reg.recording(rec.run_id):
        raise KeyboardInterrupt
    out = reg.get(rec.run_id)
    assert out.status is RunStatus.KILLED and out.finished and out.summary == {}


def test_complete_then_reopen(reg: Registry) -> None:
    rec = reg.create_run("r", {})
    with reg.recording(rec.run_id):
        pass
    assert reg.get(rec.run_id).status is RunStatus.RUNNING  # the body's end is not the run's end
    done = reg.complete(rec.run_id, {"valid_auc": 0.75}, {"bundle": "b"})
    assert done.status is RunStatus.COMPLETED and done.finished
    assert done.metrics == {"valid_auc": 0.75} and done.summary == {"bundle": "b"}
    with pytest.raises(ValueError) as info:
        reg.reopen(rec.run_id[:12])
    assert str(info.value) == f"run {rec.run_id} already completed; nothing to resume (start a new run instead)"
    killed = reg.create_run("k", {})
    reg.fail(killed.run_id, KeyboardInterrupt())
    again = reg.reopen("latest")
    assert again.run_id == killed.run_id and again.status is RunStatus.RUNNING


# ---------------------------------------------------------------------------- resolve_home


def test_resolve_home_precedence(tmp_path: Path) -> None:
    env = {"SHOAL_HOME": str(tmp_path / "from-env")}
    assert resolve_home(tmp_path / "explicit", env) == tmp_path / "explicit"
    assert resolve_home(str(tmp_path / "explicit"), env) == tmp_path / "explicit"
    assert resolve_home(None, env) == tmp_path / "from-env"
    assert resolve_home(None, {}) == Path("shoal-runs")
    assert resolve_home("", {"SHOAL_HOME": ""}) == Path("shoal-runs")  # empty means unset
    assert resolve_home("", env) == tmp_path / "from-env"
    assert resolve_home(None, {"OTHER": "x"}) == Path("shoal-runs")


def test_resolve_home_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_home("~/runs", {}) == tmp_path / "runs"
    assert resolve_home(None, {"SHOAL_HOME": "~/env-runs"}) == tmp_path / "env-runs"


# ---------------------------------------------------------------------------- concurrency

WORKERS = 2  # "two trainings writing at once"; each spawned child pays for `import shoal`
RUNS_PER_WORKER = 25
UPDATES_PER_RUN = 5
HOT_RUN = "w0-r0"  # every worker also merges keys into this one run, at the same time


def _hammer(home: str, worker: int, barrier: Any, error_dir: str) -> None:
    """Child process: open a fresh home, create runs, then update each several times.

    All workers open the (not yet existing) registry at the same moment, so schema creation races;
    after a second barrier each of their updates is mirrored by a merge of a worker-specific key
    into the summary of ``HOT_RUN``: a lost update (non-atomic read-modify-write) would drop keys.

    Runs in a spawned interpreter (see :func:`_start_worker`).  Any exception is written to
    ``error_dir`` (for the parent's assertion message) and turned into exit code 1.
    """
    try:
        barrier.wait(timeout=120)
        reg = Registry(Path(home))
        run_ids = [
            reg.create_run(f"w{worker}-r{i}", {"worker": worker, "i": i}).run_id
            for i in range(RUNS_PER_WORKER)
        ]
        barrier.wait(timeout=120)
        (hot,) = [r.run_id for r in reg.list(limit=10_000) if r.name == HOT_RUN]
        for step in range(UPDATES_PER_RUN):
            last = step == UPDATES_PER_RUN - 1
            for i, run_id in enumerate(run_ids):
                reg.update(
                    run_id,
                    metrics={"step": step, f"m{step}": worker * 1000 + i},
                    summary={f"s{step}": step},
                    status="completed" if last else None,
                    finished=last,
                )
                reg.update(hot, summary={f"x{worker}-{step}-{i}": step})
    except BaseException:
        Path(error_dir, f"worker{worker}.txt").write_text(traceback.format_exc())
        raise SystemExit(1) from None


_WORKER_RUN_NAME = "__shoal_registry_worker__"


def _start_worker(ctx: Any, name: str, **kwargs: Any) -> Any:
    """Start :func:`_hammer` in a fresh (spawned) interpreter and return the started process.

    The process target is ``runpy.run_path`` on this file, not ``_hammer`` itself: spawn pickles a
    function by module name, and under pytest's ``--import-mode=importlib`` (or with some other
    ``tests`` package installed) this test module cannot be imported by name in the child.
    Re-running the file under ``_WORKER_RUN_NAME`` triggers the guard at the bottom of the module.
    """
    proc = ctx.Process(
        target=runpy.run_path,
        args=(__file__,),
        kwargs={"init_globals": {"_WORKER_KWARGS": kwargs}, "run_name": _WORKER_RUN_NAME},
        name=name,
    )
    proc.start()
    return proc


def _assert_all_runs_complete(reg: Registry, workers: int, runs_per_worker: int) -> None:
    records = reg.list(limit=10_000)
    assert len(records) == workers * runs_per_worker
    assert len({r.run_id for r in records}) == len(records)
    by_name = {r.name: r for r in records}
    for w in range(workers):
        for i in range(runs_per_worker):
            rec = by_name[f"w{w}-r{i}"]
            assert rec.config == {"worker": w, "i": i}
            assert rec.status == "completed", rec
            assert rec.finished_at is not None
            expected_metrics: dict[str, Any] = {f"m{s}": w * 1000 + i for s in range(UPDATES_PER_RUN)}
            expected_metrics["step"] = UPDATES_PER_RUN - 1
            assert rec.metrics == expected_metrics
            own_summary = {k: v for k, v in rec.summary.items() if not k.startswith("x")}
            assert own_summary == {f"s{s}": s for s in range(UPDATES_PER_RUN)}
            assert rec.artifact_dir.is_dir()


def _integrity(db_path: Path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_two_trainings_writing_at_once_leave_the_registry_intact(tmp_path: Path) -> None:
    """Several processes initialising, creating and updating runs concurrently in one home."""
    home = tmp_path / "shared" / "home"  # does not exist yet: the workers race to create it
    errors = tmp_path / "errors"
    errors.mkdir()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [
        _start_worker(ctx, f"hammer-{w}", home=str(home), worker=w, barrier=barrier, error_dir=str(errors))
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.join(timeout=240)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()
    reports = {p.name: p.read_text() for p in errors.iterdir()}
    assert [p.exitcode for p in procs] == [0] * WORKERS, reports

    assert _integrity(home / "registry.db") == "ok"
    with sqlite3.connect(home / "registry.db") as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    reg = Registry(home)
    _assert_all_runs_complete(reg, WORKERS, RUNS_PER_WORKER)
    hot = [r for r in reg.list(limit=10_000) if r.name == HOT_RUN][0]
    assert {k: v for k, v in hot.summary.items() if k.startswith("x")} == {
        f"x{w}-{s}-{i}": s
        for w in range(WORKERS)
        for s in range(UPDATES_PER_RUN)
        for i in range(RUNS_PER_WORKER)
    }


def test_threads_sharing_one_registry_instance(reg: Registry) -> None:
    threads_n, runs_n = 8, 5
    failures: list[BaseException] = []
    created = threading.Barrier(threads_n)

    def work(worker: int) -> None:
        try:
            ids = [
                reg.create_run(f"w{worker}-r{i}", {"worker": worker, "i": i}).run_id for i in range(runs_n)
            ]
            created.wait(timeout=60)
            (hot,) = [r.run_id for r in reg.list(limit=10_000) if r.name == HOT_RUN]
            for step in range(UPDATES_PER_RUN):
                last = step == UPDATES_PER_RUN - 1
                for i, run_id in enumerate(ids):
                    reg.update(
                        run_id,
                        metrics={"step": step, f"m{step}": worker * 1000 + i},
                        summary={f"s{step}": step},
                        status="completed" if last else None,
                        finished=last,
                    )
                    reg.update(hot, summary={f"x{worker}-{step}-{i}": step})
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    assert _integrity(reg.db_path) == "ok"
    _assert_all_runs_complete(reg, threads_n, runs_n)
    hot = [r for r in reg.list(limit=10_000) if r.name == HOT_RUN][0]
    assert {k: v for k, v in hot.summary.items() if k.startswith("x")} == {
        f"x{w}-{s}-{i}": s for w in range(threads_n) for s in range(UPDATES_PER_RUN) for i in range(runs_n)
    }


def test_record_type_exported() -> None:
    assert dataclasses.is_dataclass(RunRecord)


if __name__ == _WORKER_RUN_NAME:  # a child started by _start_worker
    _hammer(**globals()["_WORKER_KWARGS"])
