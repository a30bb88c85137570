"""Media features (images, sounds): what they share. A cell holds a file path, raw bytes or base64 text; each
is decoded into an array of one fixed shape (C, H, W), and a batch carries it flattened in its dense part,
after the dense features' values and missing flags::

    dense (B, D)    [ dense values | missing flags | image 1: C*H*W | sound 1: 1*M*T | ... ]
                                                   └─────────── media blocks, config order ──────┘

A model reads each block back as (B, C, H, W), as :class:`MediaInput` describes it, and turns it into a vector
with a small CNN (:mod:`shoal.models.media`) before the rest of the model sees it. So the batch, its caches,
the training loop and the padded ONNX graph carry media without a new input of their own.

A cell is read as:

- raw bytes (a Parquet or Arrow ``binary`` column): the encoded file itself;
- ``data:...;base64,...``: the base64 payload of a data URI;
- text naming a file: relative to the folder of the data file that holds the row, or absolute;
- other text: base64 of the encoded file.

A missing cell, a file that does not exist or cannot be decoded is a bad row (:class:`~.base.Problems`), named
with its file, line, column and the path as resolved.

Cells from outside (``shoal serve``'s requests) must never name a file: the server would read its own files. A
column's :attr:`MediaColumn.read_paths` set to False (the server's request schema sets it) reads a text cell
only as base64 or a ``data:`` URI, never as a path, and never touches the file system (:func:`cell_bytes`).
"""

from __future__ import annotations

import base64
import binascii
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shoal.data.features.base import FeatureColumn, Problems

__all__ = ["MAX_MEDIA_BYTES", "MediaColumn", "MediaError", "MediaInput", "base64_bytes", "cell_bytes", "data_folder",
           "shown"]

MAX_MEDIA_BYTES = 64 * 1024 * 1024  # one image or sound file; a larger cell is refused as a bad row
MAX_PATH_CHARS = 4096
MIN_BASE64_CHARS = 64  # shorter text is a path, never base64 of a media file
READ_ROWS = 256  # cells decoded, then finished (a sound's spectrogram), at once


class MediaError(ValueError):
    """A cell that cannot be turned into a media array; the message is the bad row's reason."""


@dataclass(frozen=True)
class MediaInput:
    """Where a model finds one media feature in the dense input, and how to encode it.

    ``shape`` is (C, H, W): an image's channels, rows and columns; a sound's (1, mel bands, frames). The blocks
    lie after the ``dense_dim - sum(size)`` plain dense values, in config order.
    """

    kind: str  # "image" | "audio"
    shape: tuple[int, int, int]
    widths: tuple[int, ...]  # channels of each CNN stage
    blocks: int = 1  # residual blocks (image) or conv layers (audio) per stage
    augment: bool = False  # random changes to training examples (the model applies them in training mode only)
    flip: bool = False  # images, with augment: mirror left-right

    @property
    def size(self) -> int:
        """Values of one example in the dense input: C * H * W."""
        c, h, w = self.shape
        return c * h * w

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "shape": list(self.shape), "widths": list(self.widths), "blocks": self.blocks,
                "augment": self.augment, "flip": self.flip}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> MediaInput:
        c, h, w = (int(v) for v in d["shape"])
        return MediaInput(str(d["kind"]), (c, h, w), tuple(int(v) for v in d["widths"]), int(d.get("blocks", 1)),
                          bool(d.get("augment", False)), bool(d.get("flip", False)))


def _read_file(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_MEDIA_BYTES:
        raise MediaError(f"file {path} is {size:,} bytes, over the limit of {MAX_MEDIA_BYTES:,} for one media file")
    return path.read_bytes()


def base64_bytes(text: str, limit: int = MAX_MEDIA_BYTES) -> bytes:
    """The bytes of base64 ``text`` (or of a ``data:<type>;base64,`` URI's payload), never a file's: at most
    ``limit`` bytes, checked on the text's length before anything is decoded. Raises :class:`MediaError`."""
    text = text.strip()
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise MediaError("a data URI without ';base64,': write data:<type>;base64,<payload>")
    if not text:
        raise MediaError("empty: send the encoded file as base64")
    size = len(text) // 4 * 3  # the decoded size, within 2 bytes of padding
    if size - 2 > limit:
        raise MediaError(f"base64 of about {size:,} bytes is over the limit of {limit:,} bytes for one media value")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError(f"not valid base64 ({len(text):,} characters starting {text[:12]!r}): send the file's "
                         "bytes as standard base64 (A-Z a-z 0-9 + /, '=' padding, no line breaks), never a path") \
            from None
    if len(data) > limit:
        raise MediaError(f"base64 of {len(data):,} bytes is over the limit of {limit:,} bytes for one media value")
    return data


def cell_bytes(value: Any, base: Path, *, paths: bool = True) -> bytes:
    """The encoded file a cell holds (bytes, a data URI, a path relative to ``base`` or absolute, or base64).
    Raises :class:`MediaError` with the reason, naming the path as resolved. ``paths=False``: text is base64 or a
    data URI only (:func:`base64_bytes`), never read as a path, and the file system is never touched."""
    if value is None:
        raise MediaError("missing: a media feature needs a file path, bytes or base64 in every row")
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if not data:
            raise MediaError("empty bytes: a media feature needs an encoded file in every row")
        if len(data) > MAX_MEDIA_BYTES:
            raise MediaError(f"{len(data):,} bytes, over the limit of {MAX_MEDIA_BYTES:,} for one media file")
        return data
    text = str(value).strip()
    if not paths:
        return base64_bytes(text)
    if not text:
        raise MediaError("empty: a media feature needs a file path, bytes or base64 in every row")
    if text.startswith("data:"):
        header, comma, payload = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise MediaError("a data URI without ';base64,': write data:<type>;base64,<payload>")
        return _b64(payload, "the data URI's payload is not valid base64")
    path = Path(text) if Path(text).is_absolute() else base / text
    if len(text) <= MAX_PATH_CHARS and _is_file(path):
        try:
            return _read_file(path)
        except OSError as err:  # no permission
            raise MediaError(f"cannot read {path}: {err.strerror or err}") from None
    # base64 never holds a '.' (a file name usually ends in one), and an image or a sound is longer than 48 bytes
    if len(text) >= MIN_BASE64_CHARS and "." not in text[-6:]:
        try:
            return _b64(text, "")
        except MediaError:
            pass
    raise MediaError(f"no such file: {path} (a path is read relative to the data file's folder, {base}, "
                     "or as an absolute path; other text is read as base64)")


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; False for text no file system takes as a name (base64 of a few hundred bytes
    holds runs of more than 255 characters without a '/': the name too long for a path component)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _b64(text: str, reason: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError(reason) from None
    if not data or len(data) > MAX_MEDIA_BYTES:
        raise MediaError(f"base64 of {len(data):,} bytes: empty or over the limit of {MAX_MEDIA_BYTES:,}")
    return data


def shown(value: Any) -> str | None:
    """A cell as a bad-row report shows it: text cut to 200 characters, bytes as their length and first bytes."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return f"<{len(data):,} bytes: {data[:12]!r}...>"
    text = str(value)
    return text if len(text) <= 200 else f"{text[:200]}... ({len(text):,} characters)"


class MediaColumn(FeatureColumn):
    """A media feature: each cell decoded (:meth:`decode`) to an array of :attr:`shape`, then the whole column
    turned into model input at once (:meth:`finish`), flattened into the dense part of a batch."""

    widths: tuple[int, ...]
    blocks: int
    augment: bool
    flip: bool = False  # images, with augment: mirror left-right
    read_paths: bool = True  # False: text cells are base64 only, never a file path (set by the HTTP server)
    formats: str = "an encoded file"  # what a base64 value must hold, as a request's field description says it

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one example as the model reads it."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """One encoded file -> this kind's raw array (an image (C, H, W), a waveform (samples,)); raises
        :class:`MediaError` with the reason when it cannot."""

    @abstractmethod
    def placeholder(self) -> bytes:
        """A tiny valid encoded file of this kind (a grey image, a silent sound): to warm a server up."""

    def magic(self, data: bytes) -> bool:
        """Whether ``data`` starts like a file this kind decodes (a cheap check before decoding)."""
        return True

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Decoded arrays (N, ...) -> model input (N, C, H, W) float32 (a sound's log-mel spectrogram)."""
        return raw

    @property
    def size(self) -> int:
        c, h, w = self.shape
        return c * h * w

    def media_input(self) -> MediaInput:
        return MediaInput(self.kind, self.shape, tuple(self.widths), self.blocks, self.augment, self.flip)

    def read(self, table: pa.Table, base: Path, problems: Problems) -> np.ndarray:
        """The column's cells as model input (N, C*H*W) float32; cells that cannot be read are zeros and a
        problem of their row. Relative paths are read from ``base`` (never with :attr:`read_paths` False)."""
        cells = table.column(self.column).combine_chunks()
        values = cells.to_pylist()
        out = np.zeros((len(values), self.size), np.float32)
        bad: dict[str, list[int]] = {}
        for start in range(0, len(values), READ_ROWS):  # decoded arrays of a few rows at a time (a sound's
            decoded: list[np.ndarray] = []  # waveform is larger than its spectrogram)
            rows: list[int] = []
            for i in range(start, min(start + READ_ROWS, len(values))):
                try:
                    decoded.append(self.decode(cell_bytes(values[i], base, paths=self.read_paths)))
                    rows.append(i)
                except MediaError as err:
                    bad.setdefault(f"{err} ({self.kind} feature {self.name!r})", []).append(i)
            if decoded:
                out[rows] = np.asarray(self.finish(np.stack(decoded)), dtype=np.float32).reshape(len(rows), -1)
        if bad:
            report = pa.array([shown(v) for v in values], pa.string())
            for reason, where in bad.items():
                problems.add_at(where, self.column, reason, report)
        return out


def data_folder(file: str) -> Path:
    """The folder that relative paths in the rows of ``file`` are read from: the data file's own folder, or the
    working directory for rows that come from no file (an API call's data frame)."""
    path = Path(file)
    try:
        return path.parent.resolve() if path.is_file() else Path.cwd()
    except OSError:
        return Path.cwd()
