"""What one ``POST /predict`` costs the server around the model (issue 17): a response in one write, the event loop
`shoal serve` runs on, and no proxy-header layer (which also let a local process forge its client address)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner
from uvicorn.server import ServerState

from shoal.cli import main as cli
from shoal.runtime.http_load import free_port
from shoal.serving.protocol import OneWrite, server_config
from tests.serving.conftest import running

REQUEST = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


class _Transport(asyncio.Transport):
    """Records each write, as one system call would send it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _connect(app: Any) -> tuple[asyncio.Protocol, _Transport]:
    """The protocol `shoal serve` runs over ``app``, on a recording transport (call inside a running loop)."""
    config = server_config(app, 10.0, log_level="warning")
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


def test_a_response_leaves_in_one_write_head_and_body_together() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
        await send({"type": "http.response.body", "body": b'{"ok": true}'[:11]})

    async def main() -> list[bytes]:
        protocol, transport = _connect(app)
        protocol.data_received(REQUEST)
        for _ in range(3):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport.writes

    writes = asyncio.run(main())
    assert len(writes) == 1
    head, _, body = writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 11" in head and body == b'{"ok": true'


def test_a_streamed_response_goes_out_at_the_end_of_the_loop_iteration_not_at_its_end() -> None:
    go = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"transfer-encoding", b"chunked")]})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await go.wait()  # the response is not complete: what was written must not wait for it
        await send({"type": "http.response.body", "body": b"last"})

    async def main() -> tuple[list[bytes], list[bytes]]:
        protocol, transport = _connect(app)
        protocol.data_received(REQUEST)
        await asyncio.sleep(0.01)
        before = list(transport.writes)
        go.set()
        await asyncio.sleep(0.01)
        protocol.connection_lost(None)
        return before, transport.writes

    before, writes = asyncio.run(main())
    assert len(before) == 1 and before[0].startswith(b"HTTP/1.1 200") and b"first" in before[0]
    assert len(writes) == 2 and b"last" in writes[1] and writes[1].endswith(b"0\r\n\r\n")


def test_one_write_flushes_before_a_close_and_drops_on_abort() -> None:
    async def main() -> tuple[list[bytes], bool, list[bytes]]:
        loop = asyncio.get_running_loop()
        inner = _Transport()
        corked = OneWrite(inner, loop)
        corked.write(b"a")
        corked.writelines([b"b", b"c"])
        assert inner.writes == []  # held
        corked.close()
        closed_writes = list(inner.writes)
        other = _Transport()
        dropped = OneWrite(other, loop)
        dropped.write(b"x")
        dropped.abort()
        await asyncio.sleep(0)  # the end-of-iteration flush finds nothing
        return closed_writes, inner.closed, other.writes

    writes, closed, aborted = asyncio.run(main())
    assert writes == [b"abc"] and closed and aborted == []


@contextmanager
def _echo_server(**options: Any) -> Iterator[tuple[int, uvicorn.Config]]:
    """A real server built by ``server_config`` whose app answers the client address uvicorn put in the scope."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.dumps({"client": scope["client"][0]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    port = free_port()
    config = server_config(app, 10.0, host="127.0.0.1", port=port, log_level="warning", lifespan="off", **options)
    with running(config, timeout_s=30):
        yield port, config


def test_x_forwarded_for_from_a_loopback_client_is_not_read() -> None:
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: any local process could then name itself any
    client to the fairness limits. shoal's server reads the peer's address only."""
    with _echo_server() as (port, _), socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n\r\n")
        reply = b""
        while not reply.endswith(b"}"):
            reply += conn.recv(4096)
    assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"client": "127.0.0.1"}


def test_the_server_runs_on_uvloop_where_installed_or_the_loop_asked_for() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert server_config(None, 10.0).get_loop_factory() is uvloop.new_event_loop
    factory = server_config(None, 10.0, loop="asyncio").get_loop_factory()
    assert factory is not None
    made = factory()
    try:
        assert isinstance(made, asyncio.BaseEventLoop) and not isinstance(made, uvloop.Loop)
    finally:
        made.close()


def test_serve_refuses_an_unknown_loop_naming_the_choices(tmp_path: Any) -> None:
    result = CliRunner().invoke(cli.app, ["serve", "latest", "--loop", "trio", "--home", str(tmp_path)])
    assert result.exit_code == 2
    assert "--loop 'trio': choose one of auto, uvloop, asyncio" in " ".join(result.output.split())
