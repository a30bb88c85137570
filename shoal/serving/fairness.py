"""Per-client fairness: one client cannot take the whole server.

Three limits, per client, in one ASGI middleware (:class:`ClientLimits`) in front of every endpoint but the probes:

- **In flight**: at most ``max_inflight_per_client`` requests of one client at once; one more is answered
  ``429 Too Many Requests`` at once, with ``Retry-After`` and a closed connection.
- **Errors**: a token bucket per client of ``client_error_burst`` tokens, refilled at ``client_error_rate`` a
  second (0: no such limit); every answer in 4xx (a 422 for malformed JSON, a 413, a 408, ...) takes a token. A
  client whose bucket is empty gets a 429 for its next requests, answered only once a token is back (at most
  :data:`MAX_HOLD_S` later), so a client flooding the server with bad requests in a closed loop is slowed to
  about ``client_error_rate`` requests a second, however fast it sends. Good answers take nothing: a client that
  sends no bad requests is never limited by the bucket.
- **Bytes**: a token bucket per client of ``client_bytes_burst`` bytes, refilled at ``client_bytes_rate`` a second
  (0: no such limit); every byte of a request body read takes a token. A request that comes while the bucket has
  any token goes on at once, whatever its size, and may leave the bucket in debt; one that comes while it is in
  debt waits, its body unread, until the debt is paid, then goes on; one that would wait over :data:`MAX_HOLD_S`
  gets a 429 after that long instead (``Retry-After``: the rest of the wait). So huge but valid requests, sent
  however fast, bring the server at most ``client_bytes_rate`` bytes a second of one client (past its burst, and
  the bodies of its requests in flight); a client below the rate never waits.

Past the gate, the micro-batcher takes the jobs of different clients in turn (:mod:`shoal.serving.fair_queue`):
the key of the client is left in the request's scope under :data:`CLIENT_SCOPE_KEY`.

Which requests are "one client"::

    client_key  remote address 10.0.0.7:51234      remote address 127.0.0.1:51234
    ip          10.0.0.7                           127.0.0.1  (every local process: one client)
    connection  10.0.0.7:51234                     127.0.0.1:51234
    auto        10.0.0.7                           127.0.0.1:51234  (loopback: per connection)

Per address is the fair unit on a network, but every process on the same machine (and every client behind one
proxy) shares an address; ``auto`` keys loopback clients per connection so that a local abuser does not lock out
a local well-behaved client. The price: a local client that opens a new connection starts with full buckets (it
gets ``client_error_burst`` fast errors and ``client_bytes_burst`` bytes per connection), and the in-flight cap is
moot on loopback (HTTP/1.1: one request at a time per connection). Behind a proxy, let the proxy limit per client
(``X-Forwarded-For`` is not read: any client can forge it). Each worker process of ``--workers N`` keeps its own
counts.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import math
import time
from dataclasses import dataclass
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CLIENT_SCOPE_KEY", "ClientLimits", "Limiter", "MAX_HOLD_S"]

MAX_HOLD_S = 1.0  # the longest a request waits for a bucket: an answer, or a 429, comes by then
CLIENT_SCOPE_KEY = "shoal.client"  # where the client's key is left in the ASGI scope
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes are never limited
_PRUNE_AT = 10_000  # clients remembered before idle ones (nothing in flight, bucket full) are forgotten

ClientKey = Literal["auto", "ip", "connection"]


@dataclass
class _Client:
    tokens: float  # of the error bucket
    at: float  # when the buckets were last brought up to date (monotonic seconds)
    inflight: int = 0
    bytes: float = 0.0  # of the byte bucket; negative: a debt, paid before the client's next request goes on


class Limiter:
    """The per-client counts: requests in flight, the error bucket and the byte bucket, shared by every path into
    the app. ``byte_rate`` 0: no byte limit."""

    def __init__(self, max_inflight: int, error_rate: float, error_burst: int, key: ClientKey = "auto", *,
                 byte_rate: float = 0.0, byte_burst: int = 1) -> None:
        if max_inflight < 1 or error_rate < 0 or error_burst < 1:
            raise ValueError(f"max_inflight ({max_inflight}) and error_burst ({error_burst}) must be >= 1 and "
                             f"error_rate ({error_rate}) >= 0")
        if byte_rate < 0 or byte_burst < 1:
            raise ValueError(f"byte_rate ({byte_rate}) must be >= 0 and byte_burst ({byte_burst}) >= 1")
        self.max_inflight = max_inflight
        self.error_rate = error_rate
        self.error_burst = error_burst
        self.key = key
        self.byte_rate = byte_rate
        self.byte_burst = byte_burst
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
            client = self.clients[key] = _Client(float(self.error_burst), now, bytes=float(self.byte_burst))
        else:
            elapsed = now - client.at
            client.tokens = min(float(self.error_burst), client.tokens + elapsed * self.error_rate)
            client.bytes = min(float(self.byte_burst), client.bytes + elapsed * self.byte_rate)
            client.at = now
        return client

    def _prune(self, now: float) -> None:
        full = [k for k, c in self.clients.items()
                if not c.inflight and c.tokens + (now - c.at) * self.error_rate >= self.error_burst
                and (not self.byte_rate or c.bytes + (now - c.at) * self.byte_rate >= self.byte_burst)]
        for k in full:
            del self.clients[k]

    def admit(self, key: str, now: float | None = None) -> tuple[int, float]:
        """(429 reason or 0, seconds) for a request of client ``key`` at ``now`` (default: the monotonic clock).

        Admitted (0): counted in flight, to go on after the seconds given (0 unless the client owes bytes: the
        time its debt takes to pay). Refused: the reason, 1 too many in flight, 2 error bucket empty, 3 byte debt
        longer than :data:`MAX_HOLD_S` to pay; and the seconds until it may retry."""
        client = self._client(key, time.monotonic() if now is None else now)
        if client.inflight >= self.max_inflight:
            return 1, 1.0
        if self.error_rate and client.tokens < 1:  # a rate of 0: no error limit
            return 2, (1 - client.tokens) / self.error_rate
        wait = -client.bytes / self.byte_rate if self.byte_rate and client.bytes < 0 else 0.0
        if wait > MAX_HOLD_S:
            return 3, wait
        client.inflight += 1
        return 0, wait

    def spend(self, key: str, size: int) -> None:
        """``size`` bytes of a body of client ``key`` were read: take them from its byte bucket."""
        client = self.clients.get(key)
        if client is not None:
            client.bytes -= size

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
        if refused:
            await asyncio.sleep(min(wait, MAX_HOLD_S))  # a closed-loop flood waits too: that is the limit
            retry = max(1, math.ceil(wait - MAX_HOLD_S)) if wait > MAX_HOLD_S else 1
            if refused == 2:
                detail = (f"too many bad requests from this client (over {limiter.error_burst}, then "
                          f"{limiter.error_rate:g} a second: client_error_rate); fix the requests the earlier 4xx "
                          "answers describe")
            else:
                detail = (f"this client sent more request bytes than it may (a burst of {limiter.byte_burst:,} "
                          f"bytes, then {limiter.byte_rate:,.0f} a second: client_bytes_rate); send fewer or "
                          "smaller requests, or score files offline with `shoal predict`")
            await _too_many(send, retry, detail, close=False)
            return
        scope[CLIENT_SCOPE_KEY] = key
        status = 499  # stays so when the client went away before an answer was sent

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                limiter.spend(key, len(message.get("body", b"")))
            return message

        try:
            if wait:
                await asyncio.sleep(wait)  # the body waits unread meanwhile: the client pays its byte debt
            await self.app(scope, receive_counted if limiter.byte_rate else receive, send_status)
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


@functools.lru_cache(maxsize=1024)  # parsing an address costs a request more than the rest of the gate
def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "unknown", a unix socket's path, ...
        return False
