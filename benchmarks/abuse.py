"""Serving under abuse (issue 23): a well-behaved client's latency alone, then beside 2 attackers of each kind.

Everything runs on 127.0.0.1: a small DLRM is trained on a synthetic log in a temporary folder, ``shoal serve``
serves it as a subprocess with its default limits and deadlines (1 MiB bodies, 10 s header and body timeouts), and
one well-behaved client sends one-row requests in a closed loop over a keep-alive connection. Each phase lasts
``--seconds``; in every phase after the first, 2 attacker processes of one kind run beside it:

    huge          valid requests near every limit (a body just under max_body_bytes, ids near max_id_bytes);
                  past its byte budget (client_bytes_rate) each attacker's next request waits its turn
    half_body     100 connections each: headers and half a body, then nothing (reopened when cut off)
    slow_headers  100 connections each: the request's headers sent one byte a second (slowloris)
    bad_json      malformed JSON bodies in a closed loop, as fast as the server answers them

Rows ``{bench: "abuse", dataset: <attack>, system: "shoal", metric, value}``; metrics ``legit_p50_ms``,
``legit_p99_ms``, ``legit_rps``, ``legit_p50_ratio`` and ``legit_p99_ratio`` (under attack / quiet),
``failed_requests`` (the legit client's non-200 answers and dropped connections), ``errors_5xx`` (anyone's),
``nan_outputs``, ``attack_requests``, ``attack_cut_off`` (408/431 answers and closes the attackers got) and
``attack_429`` (answers of the per-client limits, :mod:`shoal.serving.fairness`).

    python benchmarks/abuse.py --json abuse.json             # 10 s per phase
    python benchmarks/abuse.py --json abuse.json --quick     # 3 s per phase
    python benchmarks/abuse.py --json abuse.json --quick --attacks huge   # the quiet phase and one attack
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

try:  # run as ``python benchmarks/abuse.py`` (script folder on sys.path) or imported as ``benchmarks.abuse``
    from benchmarks.common import free_port, markdown_table, row, server_process, write_json
except ImportError:
    from common import free_port, markdown_table, row, server_process, write_json  # type: ignore[no-redef]

BENCH = "abuse"
ATTACKS = ("huge", "half_body", "slow_headers", "bad_json")
ATTACKERS = 2
HELD_CONNECTIONS = 100  # per half_body / slow_headers attacker
MAX_BODY_BYTES = 1 << 20  # shoal serve's defaults
MAX_ID_BYTES = 2048
MAX_ROWS = 1024


# -- model and server ----------------------------------------------------------------------------------------------
def make_bundle(work: Path) -> tuple[Path, dict[str, Any]]:
    """Train the demo DLRM for one epoch on a small synthetic log; return its bundle and one request row."""
    from shoal.cli.demo import synthetic_config
    from shoal.config import parse_config
    from shoal.data.synthetic import SynthSpec, generate
    from shoal.training.loop import Trainer

    data = work / "clicks.parquet"
    generate(data, SynthSpec(rows=4000, seed=5))
    doc = synthetic_config(data).model_dump(mode="json")
    doc["train"].update(epochs=1, threads=1, checkpoint_every=100_000)
    bundle = Trainer(parse_config(doc, source="abuse"), work / "run").fit().bundle
    return bundle, pq.read_table(data).slice(0, 1).drop(["label"]).to_pylist()[0]


@contextmanager
def server(bundle: Path, log: Path) -> Iterator[int]:
    """``shoal serve`` on a free loopback port with its default limits; yield the port; stop it."""
    port = free_port()
    cmd = [sys.executable, "-m", "shoal.cli", "serve", str(bundle), "--port", str(port), "--threads", "1",
           "--backend", "torch"]
    with server_process(cmd, log, lambda: _ready(port), timeout_s=120):
        yield port


def _ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


# -- HTTP on raw connections ---------------------------------------------------------------------------------------
def post(body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n"
            % (content_type, len(body)) + body)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """Send one request on a keep-alive connection; return the status and body (Content-Length bodies only)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def closed_loop(port: int, request: bytes, seconds: float, latencies: list[float] | None,
                      counts: Counter[str]) -> None:
    """Send ``request`` again and again on one connection (reopened when the server closes it) for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["connect_failed"] += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while time.monotonic() < end:
                start = time.perf_counter()
                status, body = await asyncio.wait_for(exchange(reader, writer, request), 30)
                if latencies is not None:
                    latencies.append(time.perf_counter() - start)
                counts[str(status)] += 1
                counts["nan"] += b"NaN" in body or b"Infinity" in body
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            counts["dropped"] += 1
        finally:
            writer.close()


async def held(port: int, prefix: bytes, trickle: bytes, every_s: float, seconds: float,
               counts: Counter[str]) -> None:
    """One connection at a time: send ``prefix``, then ``trickle`` a byte every ``every_s``; reopen once cut off."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["connect_failed"] += 1
            await asyncio.sleep(0.1)
            continue
        counts["connections"] += 1
        try:
            writer.write(prefix)
            for i in range(len(trickle)):
                if time.monotonic() > end:
                    break
                try:
                    answer = await asyncio.wait_for(reader.read(4096), every_s)
                except TimeoutError:
                    writer.write(trickle[i:i + 1])
                    continue
                counts["cut_" + (answer[9:12].decode() if answer.startswith(b"HTTP/") else "closed")] += 1
                counts["cut_off"] += 1
                break
            else:  # the whole trickle went through: wait for what the server makes of it
                await asyncio.wait_for(reader.read(4096), max(0.0, end - time.monotonic()))
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()


def attacker(kind: str, port: int, seconds: float, sample: dict[str, Any], out: Any) -> None:
    """One attacker process: put "ready" on the queue ``out``, attack ``port`` for ``seconds`` with ``kind``, then
    put its counts on ``out``."""
    counts: Counter[str] = Counter()
    out.put("ready")  # imports done: a spawned process takes a second or more to get here on a busy machine

    async def main() -> None:
        if kind == "huge":
            await closed_loop(port, post(huge_body(sample)), seconds, None, counts)
        elif kind == "bad_json":
            await closed_loop(port, post(b'{"rows": [{"d0": 1.0, ' + b'"s0": "x", ' * 50 + b'"s1": }'), seconds,
                              None, counts)
        else:
            body = json.dumps({"rows": [sample] * 4}).encode()
            request = post(body)
            if kind == "half_body":
                prefix, trickle, every = request[:len(request) - len(body) // 2], b"x" * 10_000, 3600.0
            else:
                prefix, trickle, every = b"", request, 1.0
            await asyncio.gather(*(held(port, prefix, trickle, every, seconds, counts)
                                   for _ in range(HELD_CONNECTIONS)))

    asyncio.run(main())
    out.put(dict(counts))


def huge_body(sample: dict[str, Any]) -> bytes:
    """A valid request just under the body limit: every text/id field padded to near max_id_bytes."""
    big = {k: (v[:1] + "x" * (MAX_ID_BYTES - 64) if isinstance(v, str) else v) for k, v in sample.items()}
    one = len(json.dumps(big)) + 2
    n = min(MAX_ROWS, (MAX_BODY_BYTES - 1024) // one)
    return json.dumps({"rows": [big] * n}).encode()


# -- the benchmark ------------------------------------------------------------------------------------------------
def phase(port: int, sample: dict[str, Any], kind: str | None, seconds: float) -> dict[str, float]:
    """The well-behaved client for ``seconds`` (after 1 s of warm-up), beside 2 attackers of ``kind`` (or none)."""
    ctx = mp.get_context("spawn")
    queue: Any = ctx.Queue()
    procs = [ctx.Process(target=attacker, args=(kind, port, seconds + 1.5, sample, queue))
             for _ in range(ATTACKERS if kind else 0)]
    for p in procs:
        p.start()
    for _ in procs:  # the warm-up below starts with the attack, not before it
        assert queue.get(timeout=120) == "ready"
    latencies: list[float] = []
    counts: Counter[str] = Counter()
    request = post(json.dumps({"rows": [sample]}).encode())

    async def main() -> None:
        await closed_loop(port, request, 1.0, None, Counter())  # warm-up; the attackers get going
        await closed_loop(port, request, seconds, latencies, counts)

    asyncio.run(main())
    attack: Counter[str] = Counter()
    for p in procs:
        attack.update(queue.get(timeout=60))
        p.join(30)
    lat = np.asarray(latencies) * 1000
    failed = sum(v for k, v in counts.items() if k not in ("200", "nan"))
    return {"legit_p50_ms": float(np.percentile(lat, 50)), "legit_p99_ms": float(np.percentile(lat, 99)),
            "legit_rps": len(lat) / seconds, "failed_requests": failed,
            "errors_5xx": sum(v for k, v in (counts + attack).items() if k.startswith("5")),
            "nan_outputs": counts["nan"] + attack["nan"],
            "attack_requests": sum(v for k, v in attack.items() if k[:1].isdigit()) + attack["connections"],
            "attack_cut_off": attack["cut_off"], "attack_429": attack["429"]}


def run(seconds: float, work: Path, attacks: tuple[str, ...] = ATTACKS) -> list[dict[str, Any]]:
    bundle, sample = make_bundle(work)
    results: list[dict[str, Any]] = []
    with server(bundle, work / "server.log") as port:
        quiet = phase(port, sample, None, seconds)
        for kind in (None, *attacks):
            got = quiet if kind is None else phase(port, sample, kind, seconds)
            got = {**got, "legit_p50_ratio": got["legit_p50_ms"] / quiet["legit_p50_ms"],
                   "legit_p99_ratio": got["legit_p99_ms"] / quiet["legit_p99_ms"]}
            results += [row(BENCH, kind or "quiet", "shoal", k, v) for k, v in got.items()]
            print(f"{kind or 'quiet':>12}: " + ", ".join(f"{k} {v:.4g}" for k, v in got.items()), flush=True)
        if not _ready(port):
            raise RuntimeError("the server stopped answering /readyz after the attacks")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="write the result rows here")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 s per phase")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"comma-separated, of {', '.join(ATTACKS)} (default: all)")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    attacks = tuple(a.strip() for a in args.attacks.split(",") if a.strip())
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        parser.error(f"--attacks {args.attacks}: unknown {', '.join(unknown)}; choose from {', '.join(ATTACKS)}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {seconds:g} s per phase",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="shoal-abuse-") as tmp:
        rows = run(seconds, Path(tmp), attacks)
    write_json(rows, args.json)
    print(markdown_table(rows, ["dataset"], "metric"))


if __name__ == "__main__":
    main()
