"""`shoal serve NAME@ALIAS` follows the alias: moving it swaps the served version with no failed request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

import shoal
from shoal.artifacts.models import ModelRegistry
from shoal.serving.app import ServeSettings, create_app


def test_moving_the_alias_swaps_the_server_under_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=800)
    df = pd.DataFrame({"x": x, "g": rng.choice(["a", "b", "c"], 800), "y": (x > 0).astype(int)})
    runs = [shoal.fit(df, label="y", home=tmp_path, model="logistic", train__epochs=1, train__seed=s,
                      train__pictures=False).run_id
            for s in (0, 1)]
    models = ModelRegistry(tmp_path)
    models.register("ctr", runs[0], alias="production")
    models.register("ctr", runs[1])
    app = create_app("ctr@production", ServeSettings(follow_s=0.05, max_wait_ms=1), home=tmp_path)
    rows = [{"x": 0.5, "g": "a"}, {"x": -1.0, "g": "c"}]

    async def scenario() -> tuple[list[int], list[str]]:
        codes: list[int] = []
        served: list[str] = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://shoal") as c:
                stop = asyncio.Event()

                async def user() -> None:
                    while not stop.is_set():
                        codes.append((await c.post("/predict", json={"rows": rows})).status_code)

                users = [asyncio.create_task(user()) for _ in range(4)]
                served.append((await c.get("/model")).json()["run"])
                await asyncio.sleep(0.2)
                models.set_alias("ctr", "production", 2)  # as `shoal alias ctr@production v2` from elsewhere
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if (await c.get("/model")).json()["run"] == runs[1]:
                        break
                served.append((await c.get("/model")).json()["run"])
                await asyncio.sleep(0.1)
                stop.set()
                await asyncio.gather(*users)
        return codes, served

    from fastapi.testclient import TestClient

    docs = TestClient(app).get("/docs").text  # the serving app's docs load nothing from a CDN
    assert "cdn." not in docs and "/docs-assets/swagger-ui-bundle.js" in docs

    codes, served = asyncio.run(scenario())
    assert served == runs  # v1, then v2 after the alias moved
    assert len(codes) > 20 and set(codes) == {200}  # no request failed across the swap
