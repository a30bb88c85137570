"""``POST /predict`` as a bare ASGI app: the one path every request takes, kept short.

FastAPI's middleware, routing and dependency layers cost a sizeable share of what a one-row request costs the
server in all, so the app answers ``POST /predict`` here, before FastAPI (see
:class:`ShoalApp`); every other path goes through FastAPI as usual. The FastAPI route of ``/predict`` stays for
the OpenAPI spec and calls the same :meth:`PredictEndpoint.answer`, so both give the same answers.

    bytes -> RequestSchema.parse (pydantic, 422 naming the field) -> MicroBatcher.submit -> JSON bytes
    multipart/form-data bytes -> multipart.form_rows (one row; the same checks) ---^

The batcher takes the jobs of different clients in turn (the client as keyed by :mod:`shoal.serving.fairness`), each
request costing its body bytes.

The body must arrive within ``body_timeout_s`` of the request's start: a client that sends half a body and
stalls gets a 408 and its connection is closed, so it holds neither a connection nor the batcher (a request
being read counts as on its way to the batch for ``max_wait_ms`` at most, see :meth:`PredictEndpoint.answer`).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from shoal.serving.errors import ServeError
from shoal.serving.fairness import CLIENT_SCOPE_KEY
from shoal.serving.model import RowsRejected
from shoal.serving.multipart import form_boundary, form_rows
from shoal.serving.schema import predictions

if TYPE_CHECKING:
    from shoal.serving.service import Service

__all__ = ["PredictEndpoint", "ServeError", "ShoalApp", "check_json_content_type", "read_body"]

_DRAIN_FACTOR = 16  # an oversized body is read (and dropped) up to this many times the limit, to answer cleanly
_JSON = [(b"content-type", b"application/json")]
_CLOSE = [(b"connection", b"close")]  # after a 400, 408 or 415: the rest of the body may be unread, so no keep-alive
_UTF8 = ("utf-8", "utf8")
_PLAIN_JSON = frozenset({"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8",
                         "application/json; charset=UTF-8"})  # what clients send, accepted without parsing


def check_json_content_type(value: str | None) -> None:
    """Raise a 415 unless a request's Content-Type is JSON: ``application/json`` or ``application/*+json``, with
    no charset or UTF-8 (JSON is UTF-8, RFC 8259). A missing (or empty) Content-Type is read as JSON, so that a
    client that sends none still works; ``curl -d`` sends ``application/x-www-form-urlencoded`` and is refused."""
    if not value or value in _PLAIN_JSON or not value.strip():
        return
    media, *params = value.split(";")
    media = media.strip().lower()
    kind, _, sub = media.partition("/")
    charsets = [v.strip().strip('"').lower() for k, _, v in (p.partition("=") for p in params)
                if k.strip().lower() == "charset"]
    if kind == "application" and (sub == "json" or sub.endswith("+json")) and all(c in _UTF8 for c in charsets):
        return
    shown = value if len(value) <= 100 else value[:100] + "..."
    raise ServeError(415, f"Content-Type {shown!r} is not JSON: send the body as JSON with the header "
                          "'Content-Type: application/json' (charset utf-8, or none)")


class ClientGone(Exception):
    """The client closed the connection before its body was read: there is nobody to answer."""


async def read_body(receive: Receive, declared: str | None, limit: int, timeout_s: float | None = None) -> bytes:
    """The request body, or a 413 once it passes ``limit`` bytes (checked on Content-Length first), or a 408 when
    the whole body has not arrived within ``timeout_s`` seconds (None: no deadline)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read(receive, declared, limit)
    except TimeoutError:
        raise ServeError(408, f"the request body did not arrive within {timeout_s:g} s (body_timeout_s); send the "
                              "whole body at once, or fewer rows per request") from None


async def _read(receive: Receive, declared: str | None, limit: int) -> bytes:
    too_big = declared is not None and declared.isdigit() and int(declared) > limit
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            too_big = True
        if not too_big:
            parts.append(part)
        if not message.get("more_body", False) or size > _DRAIN_FACTOR * limit:
            break  # past the drain limit: stop reading; the connection is closed after the answer
    if too_big:
        shown = f"{int(declared):,}" if declared is not None and declared.isdigit() else f"over {size:,}"
        raise ServeError(413, f"request body of {shown} bytes is over the limit of {limit:,} bytes "
                              f"(max_body_bytes); send fewer rows per request, or start the server with a "
                              f"larger --max-body-bytes")
    return parts[0] if len(parts) == 1 else b"".join(parts)


class PredictEndpoint:
    """``POST /predict``: raw rows in, probabilities (or classes) out, through the service's micro-batcher."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def answer(self, receive: Receive, declared: str | None, content_type: str | None = None,
                     client: str = "") -> tuple[int, bytes]:
        """(HTTP status, JSON body) for one request; a 4xx for a bad request, an exception for anything else.
        ``declared``: the Content-Length header; ``content_type``: the Content-Type header (415 unless JSON or
        multipart/form-data, 400 for multipart without a boundary, checked before a byte of the body is read);
        ``client``: who sent it (the batcher serves clients in turn)."""
        try:
            boundary = form_boundary(content_type)
            if boundary is None:
                check_json_content_type(content_type)
        except ServeError as err:
            return err.status, json.dumps({"detail": err.message}).encode()
        service = self.service
        settings = service.settings
        batcher = service.batcher
        # The batch being collected may wait for this request, but only for max_wait_ms: after that a request
        # still being read stops counting, so clients that stall their bodies cannot hold every batch.
        batcher.arriving += 1
        counted = True

        def stop_counting() -> None:
            nonlocal counted
            if counted:
                counted = False
                batcher.arriving -= 1

        slow = asyncio.get_running_loop().call_later(settings.max_wait_ms / 1000.0, stop_counting)
        try:
            body = await read_body(receive, declared, settings.max_body_bytes, settings.body_timeout_s)
            served = service.model  # this request stays on this version, even if a reload swaps it meanwhile
            rows = served.schema.parse(body) if boundary is None else form_rows(served.schema, body, boundary)
        except ServeError as err:
            return err.status, json.dumps({"detail": err.message}).encode()
        except ValidationError as err:
            return 422, json.dumps({"detail": served.schema.describe_errors(err)}).encode()
        finally:
            slow.cancel()
            stop_counting()
        try:
            proba = await batcher.submit(served, rows, client, cost=len(body))
        except RowsRejected as err:
            return 422, json.dumps({"detail": str(err)}).encode()
        service.metrics.predicted_rows.inc(len(rows))
        doc = {"model": served.name, "version": served.version, "predictions": predictions(proba, served.classes,
                                                                                            served.task)}
        return 200, json.dumps(doc).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = content_type = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value.decode("latin-1")
            elif name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
        try:
            status, payload = await self.answer(receive, declared, content_type, scope.get(CLIENT_SCOPE_KEY, ""))
        except ClientGone:
            return
        headers = [*_JSON, (b"content-length", b"%d" % len(payload))]
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, *_CLOSE] if status in (400, 408, 415) else headers})
        await send({"type": "http.response.body", "body": payload})


class ShoalApp(FastAPI):
    """FastAPI, with ``POST /predict`` answered by :attr:`fast_predict` before FastAPI's layers."""

    fast_predict: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.fast_predict is not None and scope["type"] == "http" and scope["path"] == "/predict"
                and scope["method"] == "POST"):
            await self.fast_predict(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
