"""Per-client fairness: one client cannot take the whole server.

Two limits, per client, in one ASGI middleware (:class:`ClientLimits`) in front of every endpoint but the probes:

- **In flight**: at most ``max_inflight_per_client`` requests of one client at once; one more is answered
  ``429 Too Many Requests`` at once, with ``Retry-After`` and a closed connection.
- **Errors**: a token bucket per client of ``client_error_burst`` tokens, refilled at ``client_error_rate`` a
  second (0: no such limit); every answer in 4xx (a 422 for malformed JSON, a 413, a 408, ...) takes a token. A
  client whose bucket is empty gets a 429 for its next requests, answered only once a token is back (at most
  :data:`MAX_HOLD_S` later), so a client flooding the server with bad requests in a closed loop is slowed to
  about ``client_error_rate`` requests a second, however fast it sends. Good answers take nothing: a client that
  sends no bad requests is never limited by the bucket.

Which requests are "one client"::

    client_key  remote address 10.0.0.7:51234      remote address 127.0.0.1:51234
    ip          10.0.0.7                           127.0.0.1  (every local process: one client)
    connection  10.0.0.7:51234                     127.0.0.1:51234
    auto        10.0.0.7                           127.0.0.1:51234  (loopback: per connection)

Per address is the fair unit on a network, but every process on the same machine (and every client behind one
proxy) shares an address; ``auto`` keys loopback clients per connection so that a local abuser does not lock out
a local well-behaved client. The price: a local client that opens a new connection starts with a full bucket (it
gets ``client_error_burst`` fast errors per connection), and the in-flight cap is moot on loopback (HTTP/1.1: one
request at a time per connection). Behind a proxy, let the proxy limit per client (``X-Forwarded-For`` is not
read: any client can forge it). Each worker process of ``--workers N`` keeps its own counts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import time
from dataclasses import dataclass
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ClientLimits", "Limiter", "MAX_HOLD_S"]

MAX_HOLD_S = 1.0  # the longest a 429 of an empty bucket is held back
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes are never limited
_PRUNE_AT = 10_000  # clients remembered before idle ones (nothing in flight, bucket full) are forgotten

ClientKey = Literal["auto", "ip", "connection"]


@dataclass
class _Client:
    tokens: float
    at: float  # when ``tokens`` was last brought up to date (monotonic seconds)
    inflight: int = 0


class Limiter:
    """The per-client counts: requests in flight and the error bucket, shared by every path into the app."""

    def __init__(self, max_inflight: int, error_rate: float, error_burst: int, key: ClientKey = "auto") -> None:
        if max_inflight < 1 or error_rate < 0 or error_burst < 1:
            raise ValueError(f"max_inflight ({max_inflight}) and error_burst ({error_burst}) must be >= 1 and "
                             f"error_rate ({error_rate}) >= 0")
        self.max_inflight = max_inflight
        self.error_rate = error_rate
        self.error_burst = error_burst
        self.key = key
        self.clients: dict[str, _Client] = {}

    def client_of(self, scope: Scope) -> str:
        """The key of the client that sent ``scope``'s request (see the module's table)."""
        host, port = scope.get("client") or ("unknown", 0)
        if self.key == "ip" or (self.key == "auto" and not _loopback(host)):
            return str(host)
        return f"{host}:{port}"

    def _client(self, key: str, now: float) -> _Client:
        client = self.clients.get(key)
        if client is None:
            if len(self.clients) >= _PRUNE_AT:
                self._prune(now)
            client = self.clients[key] = _Client(float(self.error_burst), now)
        elif self.error_rate:
            client.tokens = min(float(self.error_burst), client.tokens + (now - client.at) * self.error_rate)
            client.at = now
        return client

    def _prune(self, now: float) -> None:
        full = [k for k, c in self.clients.items()
                if not c.inflight and c.tokens + (now - c.at) * self.error_rate >= self.error_burst]
        for k in full:
            del self.clients[k]

    def admit(self, key: str) -> tuple[int, float]:
        """(429 reason or 0, seconds until it may retry) for a request of client ``key``; counts it in flight when
        admitted (0). Reasons: 1 too many in flight, 2 error bucket empty."""
        now = time.monotonic()
        client = self._client(key, now)
        if client.inflight >= self.max_inflight:
            return 1, 1.0
        if self.error_rate and client.tokens < 1:  # a rate of 0: no error limit
            return 2, (1 - client.tokens) / self.error_rate
        client.inflight += 1
        return 0, 0.0

    def done(self, key: str, status: int) -> None:
        """A request of ``key`` ended with ``status``: out of flight, and a token less for a 4xx."""
        client = self.clients.get(key)
        if client is None:
            return
        client.inflight -= 1
        if 400 <= status < 500 and status != 429:
            client.tokens -= 1


class ClientLimits:
    """ASGI middleware applying a :class:`Limiter` to every HTTP request but those to :data:`EXEMPT` paths."""

    def __init__(self, app: ASGIApp, limiter: Limiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT:
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        key = limiter.client_of(scope)
        refused, wait = limiter.admit(key)
        if refused == 1:
            await _too_many(send, 1, f"more than {limiter.max_inflight} requests of this client in flight "
                                     "(max_inflight_per_client); wait for answers before sending more", close=True)
            return
        if refused == 2:
            await asyncio.sleep(min(wait, MAX_HOLD_S))  # a closed-loop flood waits too: that is the limit
            retry = max(1, math.ceil(wait - MAX_HOLD_S)) if wait > MAX_HOLD_S else 1
            await _too_many(send, retry, f"too many bad requests from this client (over {limiter.error_burst}, "
                                         f"then {limiter.error_rate:g} a second: client_error_rate); fix the "
                                         "requests the earlier 4xx answers describe", close=False)
            return
        status = 499  # stays so when the client went away before an answer was sent

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            limiter.done(key, status)


async def _too_many(send: Send, retry_after: int, detail: str, close: bool) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
               (b"retry-after", b"%d" % retry_after)]
    # The body was not read: uvicorn skips it on a kept-alive connection; a close ends the over-the-cap one.
    await send({"type": "http.response.start", "status": 429,
                "headers": [*headers, (b"connection", b"close")] if close else headers})
    await send({"type": "http.response.body", "body": body})


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "unknown", a unix socket's path, ...
        return False
