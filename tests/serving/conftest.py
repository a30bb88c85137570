"""Helpers shared by the serving tests."""

from __future__ import annotations

import io
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import uvicorn
from PIL import Image

from shoal.runtime.http_load import free_port


@contextmanager
def running(config: uvicorn.Config, timeout_s: float = 60) -> Iterator[None]:
    """Run a uvicorn server of ``config`` in a thread until the ``with`` ends."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def serving_on_loopback(app: Any, **config: Any) -> Iterator[int]:
    """Run ``app`` in a real uvicorn server on a free 127.0.0.1 port (a thread); yield the port; stop it.
    ``config``: more ``uvicorn.Config`` settings (e.g. ``http=`` a protocol class)."""
    port = free_port()
    with running(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config)):
        yield port


def png(rng: np.random.Generator, y: int, size: int = 8) -> bytes:
    """A small grey PNG whose class ``y`` (0 or 1) lights one quarter: what the media tests' models learn."""
    img = (rng.random((size, size)) * 60).astype(np.uint8)
    img[:4, :4] += np.uint8(150 * (y == 0))
    img[4:, 4:] += np.uint8(150 * (y == 1))
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="PNG")
    return out.getvalue()


def wav(y: int) -> bytes:
    """A 0.1 s mono 16-bit WAV at 4 kHz: a 300 Hz tone for class 0, 900 Hz for class 1."""
    t = np.arange(400) / 4000
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(4000)
        w.writeframes((0.5 * np.sin(2 * np.pi * (300 + 600 * y) * t) * 32767).astype("<i2").tobytes())
    return out.getvalue()
