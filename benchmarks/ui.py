"""``shoal ui`` and the model registry under load.

    python benchmarks/ui.py --json OUT.json [--runs 10000]

- ``list_api_s``: ``GET /api/runs`` of N synthetic finished runs (the registry's own schema), median of 5;
- ``list_page_s``: the runs page in headless Chromium (Debian's, via selenium) from navigation to the table drawn
  with every row, median of 3 (skipped without chromium);
- registry operations per second with 4 concurrent writer processes for 5 s each: ``register_per_s`` (a new version),
  ``move_alias_per_s``, ``resolve_per_s`` (``NAME@ALIAS`` -> run), all on one ``registry.db``.
Rows ``{bench: "ui", dataset: "registry", system: "shoal", metric, value}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

try:
    from benchmarks.common import markdown_table, row, write_json
except ImportError:  # pragma: no cover - run as a script
    from common import markdown_table, row, write_json  # type: ignore[no-redef]

BENCH = "ui"


def fill(home: Path, n: int) -> str:
    """``n`` synthetic finished runs in one transaction; returns one run id with a bundle folder (for registering)."""
    from shoal.artifacts.registry import Registry

    Registry(home)
    now = time.time()
    rows = [(f"2026{i:010d}-bbbbbb", f"run-{i % 37}", "train", "completed", json.dumps({"model": {"name": "dlrm"}}),
             json.dumps({"valid_auc": 0.7 + (i % 100) / 1000, "valid_ne": 0.9}),
             json.dumps({"history": [{"step": s, "logloss": 0.5} for s in range(5)]}), None, now - i, now - i, now - i)
            for i in range(n)]
    with sqlite3.connect(home / "registry.db") as conn:
        conn.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    run_id = rows[0][0]
    bundle = home / "runs" / run_id / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "bundle.json").write_text("{}")
    return run_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def page_seconds(home: Path, n: int) -> float | None:
    import uvicorn

    from shoal.ui.app import create_ui_app

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        print("no chromium/chromedriver: the page is not timed")
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_ui_app(home), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    times = []
    try:
        for _ in range(3):
            started = time.perf_counter()
            driver.get(f"http://127.0.0.1:{port}/#/")
            while driver.execute_script("return document.querySelectorAll('#runs tbody tr').length") != n:
                time.sleep(0.01)
            times.append(time.perf_counter() - started)
    finally:
        driver.quit()
        server.should_exit = True
    return statistics.median(times)


def _writer(home: str, op: str, seconds: float, run_id: str, out: Any) -> None:
    from shoal.artifacts.models import ModelRegistry

    models = ModelRegistry(home)
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        if op == "register":
            models.register("bench", run_id)
        elif op == "move_alias":
            models.set_alias("bench", "production", 1 + done % 2)
        else:
            models.resolve("bench@production")
        done += 1
    out.put(done)


def ops_per_second(home: Path, run_id: str, op: str, writers: int = 4, seconds: float = 5.0) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(home), op, seconds, run_id, out)) for _ in range(writers)]
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from shoal.artifacts.models import ModelRegistry
    from shoal.ui.app import create_ui_app

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        run_id = fill(home, args.runs)
        client = TestClient(create_ui_app(home))
        client.get("/api/runs", params={"limit": 10})
        times = []
        for _ in range(5):
            started = time.perf_counter()
            assert len(client.get("/api/runs").json()["runs"]) == args.runs
            times.append(time.perf_counter() - started)
        rows.append(row(BENCH, "registry", "shoal", "list_api_s", statistics.median(times)))
        page = page_seconds(home, args.runs)
        if page is not None:
            rows.append(row(BENCH, "registry", "shoal", "list_page_s", page))
        models = ModelRegistry(home)
        models.register("bench", run_id, alias="production")
        models.register("bench", run_id)
        for op in ("register", "move_alias", "resolve"):
            rows.append(row(BENCH, "registry", "shoal", f"{op}_per_s", ops_per_second(home, run_id, op)))
            print(rows[-1], flush=True)
    rows.append(row(BENCH, "registry", "shoal", "runs", float(args.runs)))
    write_json(rows, args.json)
    print(markdown_table(rows, ("dataset", "system"), "metric"))


if __name__ == "__main__":
    main()
