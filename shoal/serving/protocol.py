"""Header deadlines for uvicorn's HTTP/1.1 protocols: a client that sends its headers slowly is cut off.

uvicorn bounds the idle time between two requests of a connection (``timeout_keep_alive``, 5 s) but not the time a
request's headers take to arrive, nor the time before a new connection's first byte: a client that sends one byte
a second ("slowloris") holds its connection, a file descriptor and a place under ``limit_concurrency`` for ever.
The body is bounded by the app (``body_timeout_s``, :func:`shoal.serving.endpoint.read_body`), because the app
reads it; the headers are parsed by the protocol before the app is called, so their deadline lives here::

    connection opens / previous response sent ─┐
    first byte of the next request ────────────┼─ header deadline armed (header_timeout_s)
    ... header bytes, however slowly ...       │
    end of headers ────────────────────────────┴─ disarmed; the app runs (body_timeout_s from here)

On the deadline a client that sent part of a request gets ``408 Request Timeout`` (RFC 9110 15.5.9) and the
connection is closed; one that sent nothing since the connection opened is closed without an answer (a 408 on an
idle connection confuses clients that reuse it). Headers over ``max_header_bytes`` get ``431`` and a close.
Between requests uvicorn's own keep-alive timer still applies.

A refusal closes gently ("lingering close", as nginx does): the answer, then the end of our side of the
connection, then for at most :data:`LINGER_S` seconds whatever the client still sends is read and dropped. Closed
at once, a connection with the client's bytes still arriving is reset by the kernel, and the reset can destroy
the answer before the client reads it (a client still sending oversized headers saw ``ECONNRESET``, not its
``431``).

The same protocol writes each response in one call (:class:`OneWrite`): uvicorn writes a response's head and body
apart, two system calls and two packets for a one-row answer. :func:`server_config` is the ``uvicorn.Config`` that
``shoal serve`` runs: this protocol, uvloop where installed, and no ``X-Forwarded-*`` headers read.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["MAX_HEADER_BYTES", "OneWrite", "deadline_protocol", "server_config"]

log = logging.getLogger(__name__)

LINGER_S = 2.0  # after a refusal: how long the client's bytes still in flight are read and dropped before closing
MAX_HEADER_BYTES = 65_536  # request line + headers; h11 stops at 16 KB by itself, httptools (llhttp) nowhere


def _answer(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason.encode(), len(body)) + body)


class OneWrite:
    """A transport that holds what is written to it until :meth:`flush`, the end of the loop's iteration, or a
    close, then writes it in one call: a response's head and body go out in one system call (and one packet)."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
            self._loop.call_soon(self.flush)  # a response that does not complete at once (streamed) still goes out
        else:
            self._held.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():  # the peer went away meanwhile: nobody to write to
                self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def is_closing(self) -> bool:  # asked on every request: no __getattr__ detour
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HeaderDeadline:
    """Mixin over a uvicorn HTTP protocol (h11 or httptools): a deadline and a size cap on each request's headers.

    It relies only on what both implementations share: ``transport``, ``loop`` and ``cycle`` (the request being
    answered; a new object once a request's headers are complete).
    """

    header_timeout_s: float = 10.0
    max_header_bytes: int = MAX_HEADER_BYTES
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.transport = OneWrite(transport, self.loop)  # type: ignore[assignment]
        self._header_bytes = 0  # bytes of the request whose headers are being read
        self._sent_any = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._lingering = False  # refused: the answer and our end sent, the client's bytes dropped until the close
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        before = self.cycle
        between_requests = before is None or before.response_complete
        if between_requests:
            self._header_bytes += len(data)
            self._sent_any = True
            if self._header_timer is None:  # the first byte of a request on a kept-alive connection
                self._arm()
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not before:  # headers complete: the app runs, and bounds the body itself
            self._disarm()
            self._header_bytes = 0
        elif between_requests and self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._refuse(431, "Request Header Fields Too Large",
                         f"request headers over {self.max_header_bytes} bytes; send fewer or shorter headers")

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()  # type: ignore[misc]
        self._sent_any = False  # the next request's deadline starts with its first byte (keep-alive covers idle)

    def eof_received(self) -> bool | None:
        if self._lingering:  # the client is done too: close now
            self.transport.close()
            return None
        result: bool | None = super().eof_received()  # type: ignore[misc]
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._on_deadline)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_deadline(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not (self.cycle is None or self.cycle.response_complete):
            return
        if not self._sent_any:  # a connection opened and left silent: close it, there is nothing to answer
            self.transport.close()
            return
        self._refuse(408, "Request Timeout", f"the request headers did not arrive within {self.header_timeout_s:g} "
                                             "s (header_timeout_s); send the whole request at once")

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self._disarm()
        log.info("closing a connection: %d %s", status, detail)
        self.transport.write(_answer(status, reason, detail))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the answer, then our end: the client reads the answer whole
        self._lingering = True
        self.loop.call_later(LINGER_S, self.transport.close)  # meanwhile its bytes still arriving are dropped


def deadline_protocol(header_timeout_s: float, max_header_bytes: int = MAX_HEADER_BYTES) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools where installed, as uvicorn's ``auto``; else h11) with a deadline
    of ``header_timeout_s`` seconds and a cap of ``max_header_bytes`` on every request's headers.

    Pass it as ``uvicorn.Config(app, http=deadline_protocol(10.0))``.
    """
    if not header_timeout_s > 0:
        raise ValueError(f"header_timeout_s must be > 0 seconds, not {header_timeout_s}")
    base: type[asyncio.Protocol] = H11Protocol
    if importlib.util.find_spec("httptools") is not None:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    return type(f"HeaderDeadline{base.__name__}", (_HeaderDeadline, base),
                {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes})


def server_config(app: Any, header_timeout_s: float, **options: Any) -> uvicorn.Config:
    """The ``uvicorn.Config`` of a shoal server: ``app`` with :func:`deadline_protocol`'s header deadline, the
    event loop ``options["loop"]`` (default ``auto``: uvloop where installed), and ``options`` (host, port, ...).

    ``X-Forwarded-For`` is never read (``proxy_headers`` off): uvicorn would otherwise trust it from loopback peers,
    so any local process could name itself any client to :mod:`shoal.serving.fairness`.
    """
    return uvicorn.Config(app, http=deadline_protocol(header_timeout_s), proxy_headers=False, **options)
