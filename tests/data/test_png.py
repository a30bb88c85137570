"""A plain PNG read without Pillow (shoal.data.features.png): Pillow's pixels exactly, every filter, any size; any
other or irregular file gives None, so that Pillow decodes it (or names what is wrong)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shoal.data.features import ImageColumn
from shoal.data.features.png import png_pixels, png_size


def _chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered(pixels: np.ndarray, filters: list[int]) -> bytes:
    """The rows of ``pixels`` (h, w, C) each filtered by its filter type, as a PNG encoder writes them."""
    h, w, c = pixels.shape
    flat = pixels.reshape(h, w * c).astype(int)
    out = bytearray()
    for y in range(h):
        out.append(filters[y])
        for x in range(w * c):
            a = flat[y, x - c] if x >= c else 0
            b = flat[y - 1, x] if y else 0
            up_left = flat[y - 1, x - c] if y and x >= c else 0
            predicted = [0, a, b, (a + b) // 2, _paeth(a, b, up_left)][filters[y]]
            out.append((flat[y, x] - predicted) % 256)
    return bytes(out)


def _png(pixels: np.ndarray, filters: list[int], idat_parts: int = 1, extra: bytes = b"", colour: int | None = None,
         depth: int = 8, interlace: int = 0, stream: bytes | None = None) -> bytes:
    h, w, c = pixels.shape
    colour = (0 if c == 1 else 2) if colour is None else colour
    data = zlib.compress(_filtered(pixels, filters)) if stream is None else stream
    cut = np.linspace(0, len(data), idat_parts + 1).astype(int)
    idats = b"".join(_chunk(b"IDAT", data[a:b]) for a, b in zip(cut[:-1], cut[1:], strict=True))
    head = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace))
    return b"\x89PNG\r\n\x1a\n" + head + extra + idats + _chunk(b"IEND", b"")


def _pillow(data: bytes, channels: int) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image).reshape(image.height, image.width, channels)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3).map(lambda k: 1 if k < 3 else 3), st.integers(1, 19), st.integers(1, 19),
       st.integers(1, 3), st.data())
def test_every_filter_gives_pillows_pixels(channels: int, h: int, w: int, parts: int, data: st.DataObject) -> None:
    """Random pixels, each row under a random filter of the five, the stream split over 1-3 IDAT chunks, an
    ancillary chunk before them: Pillow's pixels, also written into a given array."""
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    if rng.random() < 0.3:  # runs of equal pixels, where a filter's sums wrap around 255
        pixels[:, : w // 2] = 255
    filters = [int(v) for v in rng.integers(0, 5, h)]
    file = _png(pixels, filters, parts, extra=_chunk(b"tEXt", b"Comment\x00hello"))
    assert png_size(file, channels) == (h, w)
    np.testing.assert_array_equal(_pillow(file, channels), pixels)
    np.testing.assert_array_equal(png_pixels(file, channels), pixels)
    out = np.full((h, w, channels), 7, np.uint8)
    assert png_pixels(file, channels, out) is out
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_pillows_own_files(mode: str) -> None:
    """PNGs as Pillow writes them (its own filter choices, compression levels, optimize)."""
    rng = np.random.default_rng(1)
    channels = 1 if mode == "L" else 3
    for k, (h, w) in enumerate([(28, 28), (1, 1), (5, 40), (33, 7)]):
        pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        pixels[h // 2:] //= 16  # smooth parts, where Pillow picks other filters
        buf = io.BytesIO()
        Image.fromarray(pixels.squeeze(2) if channels == 1 else pixels, mode).save(
            buf, format="PNG", compress_level=k * 3, optimize=k == 3)
        np.testing.assert_array_equal(png_pixels(buf.getvalue(), channels), pixels)


def test_other_and_irregular_files_are_left_to_pillow() -> None:
    """None, not an error and never other pixels: each of these goes to Pillow, which decodes it or names what is
    wrong."""
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    good = _png(pixels, [0, 1, 2, 4])
    assert png_pixels(good, 3) is not None
    stream = zlib.compress(_filtered(pixels, [0] * 4))
    others = {
        "grey asked of an RGB file": (good, 1),
        "16 bits a sample": (_png(pixels, [0] * 4, depth=16), 3),
        "a palette": (_png(pixels, [0] * 4, colour=3), 3),
        "interlaced": (_png(pixels, [0] * 4, interlace=1), 3),
        "a bad CRC": (good[:-30] + bytes([good[-30] ^ 1]) + good[-29:], 3),
        "truncated": (good[:-20], 3),
        "an unknown critical chunk": (_png(pixels, [0] * 4, extra=_chunk(b"ABCD", b"x")), 3),
        "a filter type 5": (_png(pixels, [0] * 4, stream=zlib.compress(b"\x05" + _filtered(pixels, [0] * 4)[1:])), 3),
        "a stream one byte short": (_png(pixels, [0] * 4, stream=zlib.compress(_filtered(pixels, [0] * 4)[:-1])), 3),
        "a stream one byte long": (_png(pixels, [0] * 4, stream=zlib.compress(_filtered(pixels, [0] * 4) + b"\0")), 3),
        "a stream cut short": (_png(pixels, [0] * 4, stream=stream[:-6]), 3),
        "not a PNG": (b"\xff\xd8\xff\xe0" + good[4:], 3),
        "nothing": (b"", 3),
    }
    for why, (file, channels) in others.items():
        assert png_pixels(file, channels) is None, why
    assert png_pixels(good, 3, max_pixels=15) is None  # 16 pixels: over the limit, Pillow's path refuses it
    with pytest.raises(ValueError, match="C-contiguous uint8"):
        png_pixels(good, 3, np.zeros((4, 4, 1), np.uint8))


def test_image_column_pixels_take_the_plain_path_and_equal_pillow() -> None:
    """ImageColumn.pixels (what the raw graph is fed) is the same whichever reader decodes the file."""
    col = ImageColumn("digit", "digit", 0, channels=1, size=(8, 8))
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    got = col.pixels(buf.getvalue())
    assert got.flags.writeable  # the plain reader's array (Pillow's path gives a read-only view of its bytes)
    np.testing.assert_array_equal(got, pixels[..., None])
    rgb = io.BytesIO()
    Image.fromarray(np.stack([pixels] * 3, axis=2)).save(rgb, format="PNG")  # an RGB file for a grey feature
    np.testing.assert_array_equal(col.pixels(rgb.getvalue()), pixels[..., None])  # Pillow converts it
