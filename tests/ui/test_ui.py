"""``shoal ui``: the JSON API on a real registry, and the pages in a real headless Chromium (Debian's, via
selenium), with screenshots left in the test's temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import shoal
from shoal.artifacts.models import ModelRegistry
from shoal.artifacts.registry import Registry
from shoal.ui.app import create_ui_app

TOKEN = "ui-admin-token-1234"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two binary runs (with pictures), one multiclass run, a failed run, and a model with an alias."""
    h = tmp_path_factory.mktemp("ui-home")
    rng = np.random.default_rng(0)
    x = rng.normal(size=800)
    df = pd.DataFrame({"x": x, "g": rng.choice(["a", "b"], 800), "y": (x + rng.normal(size=800) > 0).astype(int)})
    shoal.fit(df, label="y", home=h, name="ctr-small", model="logistic", train__epochs=3)
    shoal.fit(df, label="y", home=h, name="ctr-deep", model="mlp", train__epochs=3)
    topic = rng.choice(["sport", "money", "tech"], 600)
    words = {"sport": "goal match", "money": "bank shares", "tech": "chip code"}
    text = [f"{words[t]} today" for t in topic]
    shoal.fit(pd.DataFrame({"text": text, "topic": topic}), label="topic", home=h, name="news", train__epochs=2)
    registry = Registry(h)
    failed = registry.create_run("broken", {"model": {"name": "dlrm"}})
    registry.fail(failed.run_id, RuntimeError("out of memory"))
    runs = [r.run_id for r in registry.list() if r.name.startswith("ctr")]
    models = ModelRegistry(h)
    models.register("ctr", runs[1], alias="production")
    models.register("ctr", runs[0])
    return h


def test_api(home: Path) -> None:
    client = TestClient(create_ui_app(home, admin_token=TOKEN))
    runs = client.get("/api/runs").json()["runs"]
    assert [r["name"] for r in runs] == ["broken", "news", "ctr-deep", "ctr-small"]  # newest first
    assert runs[2]["model"] == "mlp" and 0.5 < runs[2]["metrics"]["valid_auc"] <= 1
    assert [r["name"] for r in client.get("/api/runs", params={"q": "ctr"}).json()["runs"]] == ["ctr-deep", "ctr-small"]
    assert [r["status"] for r in client.get("/api/runs", params={"status": "failed"}).json()["runs"]] == ["failed"]
    one = client.get(f"/api/runs/{runs[2]['run_id']}").json()
    assert one["pictures"] == ["learning-curve.png", "curves-valid.png"] and one["summary"]["lineage"]["data"]
    png = client.get(f"/api/runs/{runs[2]['run_id']}/pictures/curves-valid.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert client.get(f"/api/runs/{runs[2]['run_id']}/pictures/..%2Fregistry.db").status_code == 404
    assert client.get(f"/api/runs/{runs[2]['run_id']}/pictures/bundle.json").status_code == 404
    news = client.get(f"/api/runs/{runs[1]['run_id']}").json()
    assert news["summary"]["valid_confusion"] and "confusion-valid.png" in news["pictures"]
    both = client.get("/api/compare", params={"ids": f"{runs[2]['run_id']},{runs[3]['run_id']}"}).json()["runs"]
    assert len(both) == 2 and all(r["history"] for r in both)
    assert client.get("/api/compare", params={"ids": runs[0]["run_id"]}).status_code == 422
    assert client.get("/api/runs/nope").status_code == 404
    # moving an alias: refused without the token, done with it
    url = "/api/models/ctr/aliases/production"
    assert client.post(url, json={"version": 2}).status_code == 401
    assert client.post(url, json={"version": 2}, headers={"Authorization": "Bearer wrong-token-000"}).status_code == 401
    assert client.post(url, json={"version": 9}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    moved = client.post(url, json={"version": 2}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert moved.status_code == 200 and moved.json()["previous"] == 1
    assert ModelRegistry(home).resolve("ctr@production").version == 2
    ModelRegistry(home).set_alias("ctr", "production", 1)
    read_only = TestClient(create_ui_app(home))
    assert read_only.post(url, json={"version": 2}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403


def _fill(home: Path, n: int) -> None:
    """``n`` synthetic finished runs, written in one transaction (the registry's own schema)."""
    Registry(home)
    now = time.time()
    rows = [(f"2026{i:010d}-aaaaaa", f"run-{i % 37}", "train", "completed", json.dumps({"model": {"name": "dlrm"}}),
             json.dumps({"valid_auc": 0.7 + (i % 100) / 1000, "valid_ne": 0.9}), json.dumps({"history": []}), None,
             now - i, now - i, now - i) for i in range(n)]
    with sqlite3.connect(home / "registry.db") as conn:
        conn.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def test_ten_thousand_runs_list_in_under_a_second(tmp_path: Path) -> None:
    _fill(tmp_path, 10_000)
    client = TestClient(create_ui_app(tmp_path))
    client.get("/api/runs", params={"limit": 10})  # warm
    seconds = []
    for _ in range(3):  # the best of three: a shared 2-core machine's pauses are not the endpoint's cost
        started = time.perf_counter()
        runs = client.get("/api/runs").json()["runs"]
        seconds.append(time.perf_counter() - started)
    assert len(runs) == 10_000 and min(seconds) < 1.0, seconds
    assert [r["name"] for r in runs[:3]] == ["run-0", "run-1", "run-2"]  # newest first
    assert runs[0]["model"] == "dlrm" and runs[0]["metrics"] == {"valid_auc": 0.7, "valid_ne": 0.9}
    created = [r["created_at"] for r in runs]
    assert created == sorted(created, reverse=True)


def test_a_nan_metric_is_null_not_a_server_error(tmp_path: Path) -> None:
    """AUC is NaN on one-class data and the registry keeps it: every endpoint answers standard JSON with null."""
    registry = Registry(tmp_path)
    one = registry.create_run("one-class", {"model": {"name": "mlp"}})
    registry.complete(one.run_id, {"valid_auc": float("nan"), "valid_ne": 0.5, "valid_accuracy": float("inf")}, {})
    other = registry.create_run("other", {"model": {"name": "mlp"}})
    registry.complete(other.run_id, {"valid_auc": 0.7}, {})
    client = TestClient(create_ui_app(tmp_path), raise_server_exceptions=False)
    listed = {r["name"]: r["metrics"] for r in client.get("/api/runs").json()["runs"]}
    assert listed == {"one-class": {"valid_auc": None, "valid_ne": 0.5, "valid_accuracy": None},
                      "other": {"valid_auc": 0.7}}
    detail = client.get(f"/api/runs/{one.run_id}")
    assert detail.status_code == 200 and detail.json()["metrics"]["valid_auc"] is None
    both = client.get("/api/compare", params={"ids": f"{one.run_id},{other.run_id}"})
    assert both.status_code == 200 and both.json()["runs"][0]["metrics"]["valid_ne"] == 0.5


# -- in a real browser -----------------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(create_ui_app(home, admin_token=TOKEN), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the UI server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no chromium/chromedriver: `apt-get install chromium chromium-driver` (make test does it)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extras")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver: Any, script: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def test_pages_in_a_browser(server: str, browser: Any, home: Path, tmp_path: Path) -> None:
    d = browser
    shots = Path(os.environ.get("SHOAL_UI_SCREENSHOTS", tmp_path))
    # the runs table renders, filtering works, sorting works
    d.get(server + "/#/")
    _wait(d, "return document.body.dataset.page === 'runs' && document.querySelectorAll('#runs tbody tr').length")
    assert len(d.find_elements("css selector", "#runs tbody tr")) == 4
    d.save_screenshot(str(shots / "ui-runs.png"))
    box = d.find_element("css selector", "#filter")
    box.send_keys("ctr")
    _wait(d, "return document.querySelectorAll('#runs tbody tr').length === 2")
    assert "2 of 4 runs" in d.find_element("css selector", "#count").text
    box.clear()
    box.send_keys("x")
    box.clear()
    d.execute_script("document.querySelector('#filter').value=''; document.querySelector('#filter')"
                     ".dispatchEvent(new Event('input'))")
    _wait(d, "return document.querySelectorAll('#runs tbody tr').length === 4")
    # a run's page shows its curves (the images load)
    ctr = [r.run_id for r in Registry(home).list() if r.name == "ctr-deep"][0]
    d.get(f"{server}/#/run/{ctr}")
    _wait(d, "return document.body.dataset.page === 'run' && [...document.querySelectorAll('img.picture')]"
             ".every(i => i.complete && i.naturalWidth > 0) && document.querySelectorAll('img.picture').length")
    assert len(d.find_elements("css selector", "img.picture")) == 2
    d.save_screenshot(str(shots / "ui-run.png"))
    # compare overlays two runs' curves
    other = [r.run_id for r in Registry(home).list() if r.name == "ctr-small"][0]
    d.get(f"{server}/#/compare/{ctr},{other}")
    _wait(d, "return document.body.dataset.page === 'compare'")
    paths = d.find_elements("css selector", "svg path.series")
    assert {p.get_attribute("data-run") for p in paths} == {ctr, other}
    d.save_screenshot(str(shots / "ui-compare.png"))
    # moving an alias without the token is refused, with it done
    d.get(f"{server}/#/models")
    _wait(d, "return document.body.dataset.page === 'models'")
    form = d.find_element("css selector", "#move")
    form.find_element("name", "name").send_keys("ctr")
    form.find_element("name", "alias").send_keys("production")
    form.find_element("name", "version").send_keys("2")
    form.find_element("css selector", "button").click()
    _wait(d, "return document.querySelector('#move-result').textContent.startsWith('refused')")
    assert ModelRegistry(home).resolve("ctr@production").version == 1
    form.find_element("name", "token").send_keys(TOKEN)
    form.find_element("css selector", "button").click()
    _wait(d, "return document.querySelector('#move-result').textContent.includes('-> v2')")
    assert ModelRegistry(home).resolve("ctr@production").version == 2
    d.save_screenshot(str(shots / "ui-models.png"))


def test_api_docs_work_offline(home: Path) -> None:
    client = TestClient(create_ui_app(home))
    page = client.get("/api/docs").text
    assert "cdn." not in page and "/api/docs-assets/swagger-ui-bundle.js" in page
    assert client.get("/api/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static/app.js").status_code == 200 and "cdn" not in client.get("/").text
