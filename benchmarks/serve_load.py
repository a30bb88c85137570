"""The load generator of the serving benchmark (``benchmarks/serve.py``): its HTTP client and the closed loop.

:class:`Connection` is a minimal keep-alive HTTP/1.1 client written for this benchmark (about 0.03 ms of CPU per
request); :class:`HttpxConnection` offers the same two methods over ``httpx.AsyncClient`` (0.8 to 1.4 ms per
request: on two cores it sets the pace itself), to cross-check.  :func:`load` runs ``clients`` closed-loop senders
(each sends its next request when the previous one is answered), one connection each, bounded by a
:class:`Budget` of requests and seconds, and counts the answers in a :class:`Tally`; :func:`swap_under_load` does
the same while reloading the served bundle.

Kept apart from the servers and the report so that the part whose own cost must stay small, and which is the
easiest to get subtly wrong (timeouts, ``connection: close``, counting), can be read on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvloop

TOKEN = "bench-admin-token"  # the servers' SHOAL_ADMIN_TOKEN, for POST /admin/reload
MIXED_CLIENTS = 16
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Budget:
    """Bounds of one run: it stops at whichever of ``requests`` or ``seconds`` comes first."""

    seconds: float  # per measured run
    requests: int  # per measured run
    warmup_s: float


class Reply:
    """A response: status and body (benchmark client)."""

    __slots__ = ("status", "body")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection, for the load only: a benchmark tool, not a general client.

    It writes a POST and reads the answer's status line, headers and ``Content-Length`` body, nothing else (no
    chunked bodies, redirects, TLS or proxies; a server answering ``connection: close`` makes it reconnect). Its
    point is a small client cost per request (about 0.03 ms of CPU): httpx spends 0.8 to 1.4 ms, more than the
    server, so with both on two cores it, not the server, set the pace and the latency.
    """

    timeout_s = 30.0  # for the answer's head; the body follows at once

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._head = f"Host: {host}:{port}\r\nContent-Type: application/json\r\n".encode()

    async def post(self, path: str, body: bytes) -> Reply:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (path.encode(), self._head,
                                                                                   len(body)) + body)
        try:
            async with asyncio.timeout(self.timeout_s):
                head = await self._reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            await self.close()
            raise ConnectionError(f"{self.host}:{self.port} closed the connection or did not answer "
                                  f"within {self.timeout_s} s") from None
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                raise ConnectionError(f"the benchmark client reads Content-Length bodies only, not {line!r}")
        data = await self._reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return Reply(status, data)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


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


def run_async(main: Any) -> Any:
    """Run a coroutine on uvloop (the load generator's own event loop, as light as the servers')."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    ok: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0  # 5xx answers and connection errors
    seconds: float = 0.0
    mismatches: int = 0
    malformed: int = 0
    malformed_4xx: int = 0
    answers: dict[str, int] = field(default_factory=dict)  # version -> answers

    def metrics(self) -> dict[str, float]:
        lat = np.asarray(self.latencies) * 1000
        done = len(self.latencies)
        return {"requests_per_s": done / max(self.seconds, 1e-9),
                "latency_ms_p50": float(np.percentile(lat, 50)) if done else float("nan"),
                "latency_ms_p99": float(np.percentile(lat, 99)) if done else float("nan"),
                "errors_4xx": self.errors_4xx, "errors_5xx": self.errors_5xx}


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
    """Closed-loop load: ``clients`` concurrent senders until ``budget`` requests or seconds are used up.

    With ``expected`` (version -> offline probabilities of ``rows``), every answer is checked against its
    version's. ``malformed_share`` of the requests are malformed and must get a 4xx.
    """
    tally = Tally()
    # One connection per simulated user: a single httpx pool shared by 64 senders spends most of its time
    # managing the pool (measured: 244 vs 628 requests/s against /healthz).
    host, port = url.removeprefix("http://").rsplit(":", 1)
    bodies = [json.dumps({"rows": [r]}).encode() for r in rows]
    seconds = budget.seconds if measure else budget.warmup_s
    sent = 0
    rng = random.Random(0)
    users = [CLIENT_KINDS[client](host, int(port)) for _ in range(clients)]
    try:
        start = time.perf_counter()
        deadline = start + seconds

        async def user(conn: Connection | HttpxConnection) -> None:
            nonlocal sent
            while sent < budget.requests and time.perf_counter() < deadline:
                i = sent % len(rows)
                sent += 1
                bad = rng.random() < malformed_share
                body = malformed_body(sent, rows[i]) if bad else bodies[i]
                t0 = time.perf_counter()
                try:
                    r = await conn.post("/predict", body)
                except (ConnectionError, OSError, asyncio.IncompleteReadError):
                    tally.errors_5xx += 1
                    continue
                tally.latencies.append(time.perf_counter() - t0)
                if bad:
                    tally.malformed += 1
                    tally.malformed_4xx += 400 <= r.status < 500
                if r.status >= 500:
                    tally.errors_5xx += 1
                elif r.status >= 400:
                    tally.errors_4xx += 1
                elif expected is not None:
                    doc = r.json()
                    version = doc.get("version", "")
                    tally.answers[version] = tally.answers.get(version, 0) + 1
                    got = doc["predictions"][0]["probability"]
                    want = expected.get(version)
                    if want is None or abs(got - want[i]) > TOLERANCE:
                        tally.mismatches += 1
                else:
                    tally.ok += 1

        await asyncio.gather(*(user(c) for c in users))
        tally.seconds = time.perf_counter() - start
    finally:
        for conn in users:
            await conn.close()
    return tally


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
