"""Image features: a PNG, JPEG, WebP, GIF, BMP or TIFF file (any format Pillow reads) as a normalised array.

Each image is decoded with Pillow, converted to grey (``channels: 1``) or RGB (3; an alpha channel is dropped),
resized to ``size`` [H, W] (bilinear; the aspect ratio is not kept), scaled to [0, 1] and normalised as
``(x - mean) / std``::

    cell "cats/001.png" -> file -> decode -> "RGB" -> resize (W, H) -> (H, W, 3) / 255 -> (3, H, W) -> (x - m) / s

Training-time augmentation is not done here: the model applies it to each mini-batch in training mode
(:class:`~shoal.models.vision.Augment`), so cached batches stay exact and evaluation never sees it.
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Self

import numpy as np

from shoal.config import ImageFeature
from shoal.data.features.base import feature_seed
from shoal.data.features.media import MediaColumn, MediaError
from shoal.data.features.png import png_pixels

__all__ = ["IMAGE_EXTENSIONS", "ImageColumn", "image_magic"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_PIXELS = 64_000_000  # a larger image is refused as a bad row (a decompression bomb, or a mistake)


def image_magic(data: bytes) -> bool:
    """Whether ``data`` starts like an image file (PNG, JPEG, GIF, WebP, BMP, TIFF)."""
    return (data.startswith((PNG_MAGIC, b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00",
                             b"MM\x00*"))
            or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"))


class ImageColumn(MediaColumn):
    """An image feature: decoded, ``channels`` 1 or 3, resized to ``size`` (H, W), normalised."""

    kind = "image"
    formats = "base64 of a PNG/JPEG/WebP image (GIF, BMP, TIFF too)"

    def __init__(self, name: str, column: str, seed: int, channels: int = 3, size: tuple[int, int] = (32, 32),
                 mean: float = 0.5, std: float = 0.25, widths: tuple[int, ...] = (16, 32, 64), blocks: int = 1,
                 augment: bool = False, flip: bool = True) -> None:
        super().__init__(name, column, seed)
        self.channels = channels
        self.height, self.width = size
        self.mean = mean
        self.std = std
        self.widths = tuple(widths)
        self.blocks = blocks
        self.augment = augment
        self.flip = flip

    @classmethod
    def from_config(cls, f: ImageFeature) -> ImageColumn:
        return cls(f.name, f.source, feature_seed(f.name), channels=f.channels, size=(f.size[0], f.size[1]),
                   mean=f.mean, std=f.std, widths=tuple(f.widths), blocks=f.blocks, augment=f.augment, flip=f.flip)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        small = self._converted(data).resize((self.width, self.height), Image.Resampling.BILINEAR)
        x = np.asarray(small, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3) in [0, 1]
        x = x[None] if self.channels == 1 else x.transpose(2, 0, 1)  # (C, H, W)
        return (x - self.mean) / self.std

    def pixels(self, data: bytes) -> np.ndarray:
        """An encoded image -> (h, w, C) uint8 at its decoded size, as :meth:`decode` has it before the resize
        (what the raw graph is fed; it resizes). A plain PNG is read without Pillow
        (:func:`~shoal.data.features.png.png_pixels`: the same pixels in a fifth of the time)."""
        plain = png_pixels(data, self.channels, max_pixels=MAX_IMAGE_PIXELS) if data[:8] == PNG_MAGIC else None
        if plain is not None:
            return plain
        image = self._converted(data)
        # its bytes as they are (read-only): np.asarray of a PIL image copies them twice
        return np.frombuffer(image.tobytes(), np.uint8).reshape(image.height, image.width, self.channels)

    def _converted(self, data: bytes) -> Any:
        """The decoded image (a PIL image), "L" or "RGB": a JPEG decoded smaller by ``draft`` where Pillow can.
        MediaError for a file that is not an image, a damaged one or one over :data:`MAX_IMAGE_PIXELS`.

        A PNG goes straight to Pillow's PNG reader: ``Image.open`` asks each format's reader in turn and checks
        Pillow's bomb limits (~15 us of a 28 x 28 PNG's ~60 us), and the warnings filter that turns its bomb
        warning into an error is global state, costly to set and shared by a server's threads. Nothing in the PNG
        reader warns, and :data:`MAX_IMAGE_PIXELS`, below Pillow's limits, is checked here."""
        from PIL import Image, PngImagePlugin, UnidentifiedImageError

        mode = "L" if self.channels == 1 else "RGB"
        try:
            if data[:8] == PNG_MAGIC:
                return self._loaded(PngImagePlugin.PngImageFile(io.BytesIO(data)), mode)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                return self._loaded(Image.open(io.BytesIO(data)), mode)
        except UnidentifiedImageError:
            raise MediaError(f"not an image Pillow can read ({len(data):,} bytes starting {data[:8]!r}); "
                             f"expected {', '.join(e[1:].upper() for e in IMAGE_EXTENSIONS)}") from None
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as err:
            raise MediaError(f"a damaged or truncated image: {err}") from None

    def _loaded(self, opened: Any, mode: str) -> Any:
        """An opened image decoded in ``mode`` (MediaError over :data:`MAX_IMAGE_PIXELS`)."""
        with opened as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise MediaError(f"an image of {im.width} x {im.height} pixels, over the limit of "
                                 f"{MAX_IMAGE_PIXELS:,}")
            im.draft(mode, (self.width, self.height))  # JPEG: decode smaller
            im.load()
            return im if im.mode == mode else im.convert(mode)  # convert would copy an image in its mode

    def magic(self, data: bytes) -> bool:
        return image_magic(data)

    def placeholder(self) -> bytes:
        """A mid-grey PNG of this feature's size and channels."""
        from PIL import Image

        out = io.BytesIO()
        Image.new("L" if self.channels == 1 else "RGB", (self.width, self.height),
                  128 if self.channels == 1 else (128, 128, 128)).save(out, format="PNG")
        return out.getvalue()

    def options(self) -> dict[str, Any]:
        return {"channels": self.channels, "size": [self.height, self.width], "mean": self.mean, "std": self.std,
                "widths": list(self.widths), "blocks": self.blocks, "augment": self.augment, "flip": self.flip}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        h, w = (int(v) for v in d.get("size", (32, 32)))
        return cls(d["name"], d["column"], int(d.get("seed", 0)), channels=int(d.get("channels", 3)), size=(h, w),
                   mean=float(d.get("mean", 0.5)), std=float(d.get("std", 0.25)),
                   widths=tuple(int(v) for v in d.get("widths", (16, 32, 64))),
                   blocks=int(d.get("blocks", 1)), augment=bool(d.get("augment", False)),
                   flip=bool(d.get("flip", True)))
