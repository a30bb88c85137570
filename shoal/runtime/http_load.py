"""A closed-loop HTTP load against a running ``shoal serve``: what ``shoal bench --http`` and the serving benchmarks
measure with.

:class:`Connection` is a minimal keep-alive HTTP/1.1 client (about 0.03 ms of CPU per request: a general client
such as httpx spends 0.8 to 1.4 ms, more than the server, so on two cores it, not the server, would set the pace).
:func:`load` runs ``clients`` closed-loop senders (each sends its next request when the previous one is answered),
one connection each, bounded by a :class:`Budget` of requests and seconds, and counts the answers in a
:class:`Tally`. :func:`local_server` starts ``shoal serve`` on a free loopback port for as long as a ``with`` lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["Budget", "Connection", "Reply", "Tally", "bench_http", "free_port", "json_rows", "load", "local_server",
           "run_async", "server_process"]

TOLERANCE = 1e-6  # an answer's probability against the expected one


@dataclass(frozen=True)
class Budget:
    """Bounds of one run: it stops at whichever of ``requests`` or ``seconds`` comes first."""

    seconds: float  # per measured run
    requests: int  # per measured run
    warmup_s: float


class Reply:
    """A response: status and body."""

    __slots__ = ("status", "body")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class Client(Protocol):
    async def post(self, path: str, body: bytes) -> Reply: ...

    async def close(self) -> None: ...


class Connection:
    """One keep-alive HTTP/1.1 connection, for load only: not a general client.

    It writes a POST and reads the answer's status line, headers and ``Content-Length`` body, nothing else (no
    chunked bodies, redirects, TLS or proxies; a server answering ``connection: close`` makes it reconnect).
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
                raise ConnectionError(f"the load client reads Content-Length bodies only, not {line!r}")
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


def run_async(main: Any) -> Any:
    """Run a coroutine on uvloop where installed (the load's own event loop, as light as the server's)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
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


async def load(url: str, clients: int, rows: list[dict[str, Any]], budget: Budget, *,
               expected: dict[str, np.ndarray] | None = None, malformed_share: float = 0.0,
               malformed: Callable[[int, dict[str, Any]], bytes] | None = None, measure: bool = True,
               connect: Callable[[str, int], Client] = Connection) -> Tally:
    """Closed-loop load on ``POST /predict``: ``clients`` concurrent senders, one row per request, until
    ``budget`` requests or seconds are used up (``measure`` False: its warm-up seconds).

    With ``expected`` (version -> the probabilities of ``rows``), every answer is checked against its version's.
    ``malformed_share`` of the requests are ``malformed(k, row)`` bodies and must get a 4xx.
    """
    tally = Tally()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    bodies = [json.dumps({"rows": [r]}).encode() for r in rows]
    seconds = budget.seconds if measure else budget.warmup_s
    sent = 0
    rng = random.Random(0)
    users = [connect(host, int(port)) for _ in range(clients)]  # one connection per simulated user
    try:
        start = time.perf_counter()
        deadline = start + seconds

        async def user(conn: Client) -> None:
            nonlocal sent
            while sent < budget.requests and time.perf_counter() < deadline:
                i = sent % len(rows)
                sent += 1
                bad = malformed is not None and rng.random() < malformed_share
                body = malformed(sent, rows[i]) if bad and malformed is not None else bodies[i]
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


def free_port() -> int:
    """A TCP port free on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:  # noqa: S310 - our own loopback server
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def server_process(cmd: Sequence[str], log: Path, ready: Callable[[], bool], env: dict[str, str] | None = None,
                   timeout_s: float = 90.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` (a server) with its output appended to ``log``; yield once ``ready()`` is true; stop it with
    SIGTERM, then SIGKILL after 30 s. RuntimeError naming the log when it exits or is not ready within
    ``timeout_s``."""
    with log.open("ab") as out:
        proc = subprocess.Popen(list(cmd), env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if proc.poll() is not None:  # it died: say how, with the end of its log (which may be a temp file)
                tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-12:])
                raise RuntimeError(f"{' '.join(cmd[:4])} ... exited with code {proc.returncode} before it was ready; "
                                   f"the end of its log ({log}):\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(cmd[:4])} ... did not start within {timeout_s:.0f} s; see {log}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def local_server(bundle: Path, log: Path, args: Sequence[str] = (), timeout_s: float = 90.0) -> Iterator[str]:
    """``shoal serve BUNDLE`` on a free loopback port (:func:`server_process`), with ``args``; yields its URL once
    ``/readyz`` answers 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "shoal.cli", "serve", str(bundle), "--host", "127.0.0.1", "--port", str(port),
           *args]
    with server_process(cmd, log, lambda: _ready(url), timeout_s=timeout_s):
        yield url


def json_rows(rows: Sequence[dict[str, Any]], texts: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Raw rows as a JSON request body holds them: NaN as null, bytes (an image, a sound) as base64, a missing
    text (a column of ``texts``) as "" (the server takes a string for a text, "" when empty)."""
    import base64
    import math

    def cell(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, bytes | bytearray):
            return base64.b64encode(v).decode("ascii")
        return v

    return [{k: "" if v is None and k in texts else cell(v) for k, v in r.items()} for r in rows]


def bench_http(bundle: Path, rows: Sequence[dict[str, Any]], log: Path, *, clients: Sequence[int] = (1, 64),
               seconds: float = 2.0, args: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``shoal serve BUNDLE`` (with ``args``) on loopback, loaded with one row per request by each number of
    ``clients`` in turn (a warm-up of a third of ``seconds`` first): per load, ``clients``, ``requests_per_s``,
    ``latency_ms_p50``, ``latency_ms_p99``, ``errors_4xx``, ``errors_5xx``, and the backend the server chose."""
    budget = Budget(seconds=seconds, requests=10**9, warmup_s=max(seconds / 3, 0.3))
    out: list[dict[str, Any]] = []
    with local_server(bundle, log, args) as url:
        with urllib.request.urlopen(f"{url}/model", timeout=10) as r:  # noqa: S310 - our own loopback server
            described = json.loads(r.read())
        backend = str(described.get("backend", "?"))
        body_rows = json_rows(rows, [f["name"] for f in described.get("fields", []) if f.get("kind") == "text"])
        for n in clients:
            run_async(load(url, n, body_rows, budget, measure=False))
            tally = run_async(load(url, n, body_rows, budget))
            out.append({"clients": n, "backend": backend, **tally.metrics()})
    return out
