"""Slow and half-sent requests against a real uvicorn server on a loopback socket (issue 23).

A client that sends its headers a byte at a time (slowloris), sends half a body and holds it, or opens a connection
and says nothing, is cut off after its deadline (``header_timeout_s``, ``body_timeout_s``) while a well-behaved
client beside it keeps getting answers.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from shoal.config import parse_config
from shoal.data.synthetic import SynthSpec, generate
from shoal.serving.app import ServeSettings, create_app
from shoal.serving.protocol import deadline_protocol
from shoal.training.loop import Trainer
from tests.serving.conftest import serving_on_loopback

DEADLINE_S = 0.6  # header and body deadlines of the server under test
SLACK_S = 1.5  # a shared 2-core machine: the cut may come this late


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("slow")
    data = folder / "clicks.parquet"
    generate(data, SynthSpec(rows=400, dense=2, sparse=4, base_rate=0.3, max_cardinality=20, seed=3))
    config = {
        "name": "slow",
        "data": {"train": str(data), "valid_fraction": 0.25},
        "label": {"column": "label"},
        "features": [{"name": "d0", "kind": "dense"}, {"name": "d1", "kind": "dense"},
                     {"name": "s0", "kind": "sparse", "buckets": 64}, {"name": "s1", "kind": "sparse", "buckets": 64}],
        "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [4], "top_mlp": [4]},
        "train": {"epochs": 1, "batch_size": 128, "seed": 0, "threads": 1, "pictures": False},  # no PNGs: none is read
    }
    bundle = Trainer(parse_config(config, source="test"), folder / "run").fit().bundle
    return bundle, pq.read_table(data, columns=["d0", "d1", "s0", "s1"]).slice(0, 1).to_pylist()[0]


@pytest.fixture(scope="module")
def port(served: tuple[Path, dict[str, Any]]) -> Iterator[int]:
    app = create_app(served[0], ServeSettings(body_timeout_s=DEADLINE_S, header_timeout_s=DEADLINE_S))
    with serving_on_loopback(app, http=deadline_protocol(DEADLINE_S, max_header_bytes=8192)) as free:
        yield free


def _request(row: dict[str, Any]) -> bytes:
    body = json.dumps({"rows": [row]}).encode()
    return (b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body))


def _until_closed(s: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it (monotonic)."""
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    return answer, time.monotonic()


def _response(s: socket.socket) -> bytes:
    """One whole response of a keep-alive connection: the head, then Content-Length bytes of body (the head and
    the body may arrive in separate reads)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _trickle(s: socket.socket, data: bytes, every_s: float, stop: threading.Event) -> None:
    """Send ``data`` a byte at a time (slowloris) until the server closes the connection or ``stop`` is set."""
    for i in range(len(data)):
        if stop.wait(every_s):
            return
        try:
            s.sendall(data[i:i + 1])
        except OSError:  # the server cut us off
            return


def test_slow_headers_and_stalled_bodies_are_cut_off_while_others_are_served(
        port: int, served: tuple[Path, dict[str, Any]]) -> None:
    request = _request(served[1])
    head, _, _ = request.partition(b"\r\n\r\n")
    opened = time.monotonic()
    attackers: list[tuple[str, socket.socket]] = []
    stop = threading.Event()
    trickles = []
    for _ in range(5):  # the request line and a header, then nothing
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\n")
        attackers.append(("half headers", s))
    for _ in range(5):  # one header byte every 0.1 s: each byte would reset a per-read timeout, never this one
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        trickles.append(threading.Thread(target=_trickle, args=(s, head, 0.1, stop), daemon=True))
        attackers.append(("trickled headers", s))
    for _ in range(5):  # whole headers, half the body, then nothing
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request[:len(head) + 10])
        attackers.append(("half body", s))
    for t in trickles:
        t.start()
    try:
        latencies = []
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            while time.monotonic() - opened < DEADLINE_S:  # a well-behaved keep-alive client, meanwhile
                start = time.perf_counter()
                s.sendall(request)
                assert _response(s).startswith(b"HTTP/1.1 200")
                latencies.append(time.perf_counter() - start)
        assert len(latencies) >= 3 and max(latencies) < 0.25, latencies
        for kind, s in attackers:
            with s:
                answer, closed = _until_closed(s)
            assert answer.startswith(b"HTTP/1.1 408"), (kind, answer)
            assert DEADLINE_S * 0.9 < closed - opened < DEADLINE_S + SLACK_S, (kind, closed - opened)
            detail = json.loads(answer.partition(b"\r\n\r\n")[2])["detail"]
            words = "(body_timeout_s)" if kind == "half body" else "(header_timeout_s)"
            assert f"did not arrive within {DEADLINE_S:g} s {words}" in detail, (kind, detail)
    finally:
        stop.set()


def test_a_silent_connection_is_closed_without_an_answer(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        opened = time.monotonic()
        answer, closed = _until_closed(s)
    assert answer == b"" and closed - opened < DEADLINE_S + SLACK_S


def test_the_deadline_applies_again_to_the_next_request_of_a_kept_alive_connection(
        port: int, served: tuple[Path, dict[str, Any]]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(_request(served[1]))
        assert _response(s).startswith(b"HTTP/1.1 200")
        time.sleep(DEADLINE_S * 1.2)  # idle, within uvicorn's keep-alive (5 s): not a header deadline
        s.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\n")
        sent = time.monotonic()
        answer, closed = _until_closed(s)
    assert answer.startswith(b"HTTP/1.1 408") and b"header_timeout_s" in answer
    assert DEADLINE_S * 0.9 < closed - sent < DEADLINE_S + SLACK_S


def test_oversized_headers_are_431(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"x-pad: " + b"a" * 4000 + b"\r\n")
        for _ in range(3):
            try:
                s.sendall(b"x-pad: " + b"a" * 4000 + b"\r\n")
            except OSError:
                break
        answer, _ = _until_closed(s)
    assert answer.startswith(b"HTTP/1.1 431"), answer
    assert "request headers over 8192 bytes" in json.loads(answer.partition(b"\r\n\r\n")[2])["detail"]


def test_a_client_still_sending_reads_its_431_whole(port: int) -> None:
    """The server closes a refused connection gently: a client whose oversized headers are still arriving when
    the 431 is written reads the answer and the server's end, never a reset that would destroy them (a close at
    once with the client's bytes unread makes the kernel reset the connection)."""
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            try:
                for _ in range(40):  # ~160 KB of headers, sent on well after the server refused them
                    s.sendall(b"x-pad: " + b"a" * 4000 + b"\r\n")
            except OSError:
                pass
            answer, _ = _until_closed(s)
        assert answer.startswith(b"HTTP/1.1 431"), answer


def test_header_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="header_timeout_s must be > 0 seconds, not 0"):
        deadline_protocol(0)
