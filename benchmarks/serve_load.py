"""The load generator of the serving benchmark (``benchmarks/serve.py``).

The client and the closed loop are shoal's own (:mod:`shoal.runtime.http_load`, which ``shoal bench --http`` uses):
:class:`Connection` is a minimal keep-alive HTTP/1.1 client (about 0.03 ms of CPU per request). Here:
:class:`HttpxConnection`, the same two methods over ``httpx.AsyncClient`` (0.8 to 1.4 ms per request: on two
cores it sets the pace itself), to cross-check; the benchmark's malformed bodies; :func:`swap_under_load`, the
load while the served bundle is reloaded.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from shoal.runtime.http_load import Budget, Connection, Reply, Tally, run_async
from shoal.runtime.http_load import load as _load

__all__ = ["CLIENT_KINDS", "MIXED_CLIENTS", "TOKEN", "Budget", "Connection", "HttpxConnection", "Reply", "Tally",
           "load", "malformed_body", "run_async", "swap_under_load"]

TOKEN = "bench-admin-token"  # the servers' SHOAL_ADMIN_TOKEN, for POST /admin/reload
MIXED_CLIENTS = 16


class HttpxConnection:
    """The same interface over ``httpx.AsyncClient`` (one connection): ``--client httpx``, to cross-check."""

    def __init__(self, host: str, port: int) -> None:
        self.client = httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30,
                                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def post(self, path: str, body: bytes) -> Reply:
        try:
            r = await self.client.post(path, content=body, headers={"content-type": "application/json"})
        except httpx.TransportError as err:
            raise ConnectionError(str(err)) from None
        return Reply(r.status_code, r.content)

    async def close(self) -> None:
        await self.client.aclose()


CLIENT_KINDS: dict[str, type[Connection] | type[HttpxConnection]] = {"raw": Connection, "httpx": HttpxConnection}


def malformed_body(k: int, good: dict[str, Any]) -> bytes:
    """Four kinds, in turn: a wrong type, a missing field, an unknown field, a body over the 1 MiB limit."""
    bad = dict(good)
    kind = k % 4
    if kind == 0:
        bad["d0"] = "not a number"
    elif kind == 1:
        bad.pop("s1")
    elif kind == 2:
        bad["colour"] = "red"
    else:
        return json.dumps({"rows": [good], "padding": "x" * (1 << 20)}).encode()
    return json.dumps({"rows": [bad]}).encode()


async def load(url: str, clients: int, rows: list[dict[str, Any]], budget: Budget, *,
               expected: dict[str, np.ndarray] | None = None, malformed_share: float = 0.0,
               measure: bool = True, client: str = "raw") -> Tally:
    """:func:`shoal.runtime.http_load.load` with this benchmark's malformed bodies and a choice of client."""
    return await _load(url, clients, rows, budget, expected=expected, malformed_share=malformed_share,
                       malformed=malformed_body, measure=measure, connect=CLIENT_KINDS[client])


async def swap_under_load(url: str, rows: list[dict[str, Any]], budget: Budget, versions: dict[str, Path],
                          expected: dict[str, np.ndarray], client: str = "raw") -> tuple[Tally, int, int]:
    """Alternate the served version every ~0.5 s while 16 clients send requests; (tally, swaps ok, swaps)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    stop = budget.seconds - 0.5
    order = [versions[v] for v in sorted(versions)] * 100
    swaps = ok = 0

    async def swapper() -> None:
        nonlocal swaps, ok
        async with httpx.AsyncClient(base_url=url, timeout=60) as admin:
            started = time.perf_counter()
            while time.perf_counter() - started < stop:
                await asyncio.sleep(0.5)
                r = await admin.post("/admin/reload", headers=auth, json={"ref": str(order[swaps + 1])})
                swaps += 1
                ok += r.status_code == 200

    tally, _ = await asyncio.gather(load(url, MIXED_CLIENTS, rows, budget, expected=expected, client=client),
                                    swapper())
    return tally, ok, swaps
