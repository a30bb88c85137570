"""Image and audio columns, recognised by the file extension of their values or the magic bytes of their content.

A column is media when most of the first values sampled are file paths ending in an image (``.png``, ``.jpg``,
...) or audio (``.wav``, ``.flac``) extension, or naming files that start like one (no extension), or are bytes
(or base64 text, or ``data:`` URIs) that start like such a file. The first file
that can be read also suggests the options of the starter config: an image's channels and a size near its own;
a sound's sample rate and a length that holds the sampled sounds.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.data.features.audio import AUDIO_EXTENSIONS, audio_magic, sound_info
from shoal.data.features.image import IMAGE_EXTENSIONS, image_magic
from shoal.data.features.media import MediaError, cell_bytes

__all__ = ["MediaGuess", "sniff_media"]

MEDIA_SHARE = 0.8  # of the sampled values that must look like media files
MAX_OPENED = 8  # files opened to suggest the options


@dataclass(frozen=True)
class MediaGuess:
    """A media column: its kind, why, and the options suggested for the starter config."""

    kind: str  # image | audio
    reason: str
    options: dict[str, Any] = field(default_factory=dict)


def _content(value: Any) -> bytes | None:
    """The first bytes of a bytes cell, of base64 text or of a ``data:<type>;base64,`` URI's payload (for the magic
    bytes), else None."""
    if isinstance(value, bytes):
        return value[:16]
    if isinstance(value, str) and value.startswith("data:"):
        header, comma, payload = value[:256].partition(",")
        value = payload if comma and header.endswith(";base64") else ""
    if isinstance(value, str) and len(value) >= 24 and "." not in value[-6:]:
        try:
            return base64.b64decode(value[:24], validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def _file_what(value: Any, folder: Path) -> tuple[str, str] | None:
    """(kind, how) of a path without a media extension, by the magic bytes of the file it names, or None."""
    if not isinstance(value, str) or not value.strip() or len(value) > 1024 or "\n" in value:
        return None
    path = Path(value.strip())
    path = path if path.is_absolute() else folder / path
    try:
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if image_magic(head):
        return "image", "file paths, by their content"
    if audio_magic(head):
        return "audio", "file paths, by their content"
    return None


def _what(value: Any) -> tuple[str, str] | None:
    """(kind, how it was recognised) of one value, or None."""
    head = _content(value)
    if head is not None:
        how = "bytes" if isinstance(value, bytes) else "base64"
        if image_magic(head):
            return "image", how
        if audio_magic(head):
            return "audio", how
        return None
    if isinstance(value, str):
        suffix = Path(value.strip()).suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            return "image", "file paths"
        if suffix in AUDIO_EXTENSIONS:
            return "audio", "file paths"
    return None


def sniff_media(values: Sequence[Any], folder: Path) -> MediaGuess | None:
    """Whether the sampled non-missing ``values`` of a column are images or sounds; relative paths are read
    from ``folder`` (the data file's) to suggest options. None when the column is not media."""
    if not values:
        return None
    found = [_what(v) for v in values]
    if sum(f is not None for f in found) < MEDIA_SHARE * len(values) \
            and any(_file_what(v, folder) for v in values[:MAX_OPENED]):  # files named without an extension
        found = [f or _file_what(v, folder) for f, v in zip(found, values, strict=True)]
    kinds = [f[0] for f in found if f is not None]
    if len(kinds) < MEDIA_SHARE * len(values):
        return None
    kind = max(set(kinds), key=kinds.count)
    how = next(f[1] for f in found if f is not None and f[0] == kind)
    share = 100.0 * kinds.count(kind) / len(values)
    noun = "images" if kind == "image" else "sounds"
    reason = f"{noun} ({how}; {share:.0f}% of {len(values)} sampled values)"
    opened = []
    for v in values[:MAX_OPENED]:
        try:
            opened.append(cell_bytes(v, folder))
        except MediaError:
            continue
    if not opened:
        return MediaGuess(kind, reason + f"; none of the first files could be read from {folder}")
    options = _image_options(opened) if kind == "image" else _audio_options(opened)
    described = ", ".join(f"{k} {v}" for k, v in options.items())
    return MediaGuess(kind, f"{reason}; suggested {described}" if options else reason, options)


def _image_options(files: list[bytes]) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError

    sizes, grey = [], True
    for data in files:
        try:
            with Image.open(io.BytesIO(data)) as im:
                sizes.append((im.height, im.width))
                grey = grey and im.mode in ("1", "L", "I", "I;16", "F", "LA")
        except (UnidentifiedImageError, OSError, ValueError):
            continue
    if not sizes:
        return {}
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    scale = min(1.0, 64 / max(h, w))  # small images as they are; larger ones down to 64 on their long side
    return {"channels": 1 if grey else 3, "size": [max(4, round(h * scale)), max(4, round(w * scale))]}


def _audio_options(files: list[bytes]) -> dict[str, Any]:
    rates, seconds = [], []
    for data in files:
        info = sound_info(data)
        if info is not None:
            rates.append(info[0])
            seconds.append(info[1])
    if not rates:
        return {}
    longest = max(seconds)
    return {"sample_rate": min(max(rates), 16_000), "seconds": min(60.0, max(0.5, round(longest * 4 + 0.5) / 4))}
