"""One row through inputs bound once: ONNX Runtime's IOBinding for the raw graph's batch-1 call.

A request's usual row (numbers and single ids, the export's fixed ``max_bytes``) gives the raw graph inputs of the
same shapes every time. :class:`BoundRow` binds each of those inputs once, as an ``OrtValue`` over a slice of
one numpy buffer per kind, and answers a row by writing its values into the buffers and running the binding:
ONNX Runtime no longer converts every input on every call (~0.3 us each: ~30 us of a ~100 us call on a graph
with 66 inputs). Lists of ids change shape with the row: they are bound on each call.

A row of media alone (an image or speech model's request) is bound the same way by :class:`BoundMedia`: each
audio feature's ``(1, samples)`` wave is one buffer, into which a usual WAV (mono 16-bit PCM at the feature's rate)
is converted straight from the file's bytes; each image feature's ``(1, h, w, C)`` pixels are one buffer (made
again when an image of another size comes), into which a plain PNG is decoded straight from the file's bytes
(:func:`~shoal.data.features.png.png_pixels`), another image by Pillow: no decoded copy, no feed dict, no
conversion by ONNX Runtime.

A bound row owns its buffers, so it serves one thread at a time: :class:`BoundRows` keeps one per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from shoal.data.features.audio import usual_pcm16_mono
from shoal.data.features.image import ImageColumn
from shoal.data.features.media import MediaError, cell_bytes
from shoal.data.features.png import png_pixels, png_size
from shoal.export.raw_feed import row_parts, row_plan
from shoal.export.raw_media import media_column

__all__ = ["BoundMedia", "BoundRow", "BoundRows", "bindable", "media_only"]

_HERE = Path(".")  # never read from: bound media take bytes or base64, never a path
_PCM16 = np.float32(1 / 32768)  # a power of two: exactly the decoder's x / 32768
BOUND_PIXELS = 1 << 20  # a larger image takes the plain feed: a thread's buffer is not kept that large


def bindable(contract: Mapping[str, Any]) -> bool:
    """Whether one row of ``contract`` has inputs of fixed shapes: numbers and ids only, a fixed max_bytes."""
    return row_plan(contract) is not None and contract.get("max_bytes") is not None


def media_only(contract: Mapping[str, Any]) -> bool:
    """Whether ``contract``'s features are all images and sounds (:class:`BoundMedia` binds a row of them)."""
    return bool(contract["features"]) and all(f["kind"] in ("audio", "image") for f in contract["features"])


class _Binding:
    """One IOBinding of ``session``'s ``output``: inputs bound once over a subclass's buffers, one call per row."""

    def __init__(self, session: Any, output: str) -> None:
        import onnxruntime as ort

        self.output, self.binding, self._session = output, session.io_binding(), session
        self._run = session._sess.run_with_iobinding if hasattr(session, "_sess") else None
        self._options = ort.RunOptions()
        self.binding.bind_output(output, "cpu")

    def _bind(self, name: str, buffer: np.ndarray) -> None:
        """Bind input ``name`` to ``buffer`` for good (a view of an array the instance keeps: the binding reads
        its memory): the row's values are written into it."""
        import onnxruntime as ort

        self.binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(buffer))

    def _answer(self) -> np.ndarray:
        """Run the binding on what the buffers hold now: the graph's ``output``."""
        if self._run is not None:
            self._run(self.binding._iobinding, self._options)
        else:  # pragma: no cover - a binding without the private call
            self._session.run_with_iobinding(self.binding)
        out: np.ndarray = self.binding.copy_outputs_to_cpu()[0]
        return out


class BoundRow(_Binding):
    """``session``'s inputs for one row of ``contract``, bound once over buffers (see the module's docstring)."""

    def __init__(self, session: Any, contract: Mapping[str, Any], output: str) -> None:
        plan = row_plan(contract)
        if plan is None or not bindable(contract):
            raise ValueError("only a contract of numbers and ids with a fixed max_bytes can be bound")
        super().__init__(session, output)
        self.plan, self.width = plan, int(contract["max_bytes"])
        self.values = np.zeros(len(plan.dense), np.float32)
        self.bytes = np.zeros((len(plan.ids), 1, self.width), np.uint8)
        self.lengths = np.zeros(len(plan.ids), np.int64)
        for k, (_, name) in enumerate(plan.dense):
            self._bind(name, self.values[k:k + 1])
        for k, (_, b, ln, _) in enumerate(plan.ids):
            self._bind(b, self.bytes[k])
            self._bind(ln, self.lengths[k:k + 1])

    def run(self, row: Mapping[str, Any]) -> np.ndarray | None:
        """The graph's ``output`` for ``row``, or None when the row needs the general feed (a missing column, a
        cell needing pyarrow's rules, an id longer than max_bytes: :func:`~shoal.export.raw_feed.raw_feed`
        names it)."""
        parts = row_parts(row, self.plan, self.width)
        if parts is None:
            return None
        self.values[:] = parts.values
        if self.plan.ids:
            self.bytes[:, 0] = parts.ids
            self.lengths[:] = parts.lengths
        for (_, b, ln, counts, _), (data, lengths, count) in zip(self.plan.lists, parts.lists, strict=True):
            self.binding.bind_cpu_input(b, data)
            self.binding.bind_cpu_input(ln, lengths)
            self.binding.bind_cpu_input(counts, count)
        return self._answer()


class BoundMedia(_Binding):
    """``session``'s inputs for one row of images and sounds (a contract of media features alone:
    :func:`media_only`), bound over one buffer per input (see the module's docstring)."""

    def __init__(self, session: Any, contract: Mapping[str, Any], output: str) -> None:
        if not media_only(contract):
            raise ValueError("only a contract of image and audio features alone binds as media")
        super().__init__(session, output)
        self.features = list(contract["features"])
        self.buffers: list[np.ndarray] = []  # each feature's: a sound's (1, samples) wave, an image's (1, 2) size
        self.pixels: list[np.ndarray | None] = [None] * len(self.features)  # an image's (1, h, w, C), once seen
        for f in self.features:
            if f["kind"] == "image":
                self.buffers.append(np.zeros((1, 2), np.int64))
                self._bind(f["inputs"]["sizes"], self.buffers[-1])
            else:
                self.buffers.append(np.zeros((1, int(f["samples"])), np.float32))
                self._bind(f["inputs"]["wave"], self.buffers[-1])
                if "lengths" in f["inputs"]:  # a version 3 contract: each sound's samples, all of them
                    self._bind(f["inputs"]["lengths"], np.full(1, int(f["samples"]), np.int64))
        # each image feature's decoder, for the images that are not plain PNGs (Pillow)
        self._images = {k: cast(ImageColumn, media_column(f)) for k, f in enumerate(self.features)
                        if f["kind"] == "image"}

    def run(self, row: Mapping[str, Any]) -> np.ndarray | None:
        """The graph's ``output`` for ``row``, or None when a cell needs the general feed (missing, not an image,
        a sound not a usual WAV at the feature's rate, an image over :data:`BOUND_PIXELS`:
        :func:`~shoal.export.raw_media.media_feed` decodes it or names the row)."""
        for k, (f, buffer) in enumerate(zip(self.features, self.buffers, strict=True)):
            try:
                data = cell_bytes(row.get(f["column"]), _HERE, paths=False)
            except MediaError:
                return None
            if not (self._image(k, f, data) if f["kind"] == "image" else self._sound(f, data, buffer)):
                return None
        return self._answer()

    @staticmethod
    def _sound(feature: Mapping[str, Any], data: bytes, wave: np.ndarray) -> bool:
        usual = usual_pcm16_mono(data)
        if usual is None or usual[2] != int(feature["sample_rate"]):
            return False
        pcm = np.frombuffer(usual[0], "<i2", count=min(len(usual[0]) // 2, wave.shape[1]))
        np.multiply(pcm, _PCM16, out=wave[0, : len(pcm)])  # as the decoder: float32(x) / 32768, exactly
        wave[0, len(pcm):] = 0  # silence after a shorter sound
        return True

    def _image(self, k: int, feature: Mapping[str, Any], data: bytes) -> bool:
        channels = int(feature["channels"])
        size = png_size(data, channels)
        decoded = None
        if size is None:  # not a plain PNG: Pillow decodes it (as the feed would)
            try:
                decoded = self._images[k].pixels(data)
            except MediaError:
                return False
            size = decoded.shape[0], decoded.shape[1]
        if size[0] * size[1] > BOUND_PIXELS:
            return False
        pixels = self.pixels[k]
        if pixels is None or pixels.shape[1:3] != size:  # another size: a buffer of its own, bound in place
            pixels = self.pixels[k] = np.empty((1, *size, channels), np.uint8)
            self._bind(feature["inputs"]["pixels"], pixels)
            self.buffers[k][0] = size
        if decoded is not None:
            pixels[0] = decoded
            return True
        if png_pixels(data, channels, pixels[0]) is not None:
            return True
        try:  # an irregular PNG: Pillow decodes it, or says what is wrong (the feed then names the row)
            pixels[0] = self._images[k].pixels(data)
        except (MediaError, ValueError):
            return False
        return True


class BoundRows:
    """A :class:`BoundRow` (or :class:`BoundMedia`) per thread for ``session`` (made on a thread's first row), or
    none at all when the contract cannot be bound (texts, media beside numbers or ids, the Loop form's variable
    width): :meth:`run` then answers None."""

    def __init__(self, session: Any, contract: Mapping[str, Any], output: str) -> None:
        self.session, self.contract, self.output = session, contract, output
        self.kind = BoundRow if bindable(contract) else BoundMedia if media_only(contract) else None
        self._local = threading.local()

    @property
    def possible(self) -> bool:
        return self.kind is not None

    def run(self, row: Mapping[str, Any]) -> np.ndarray | None:
        if self.kind is None:
            return None
        bound = getattr(self._local, "bound", None)
        if bound is None:
            bound = self._local.bound = self.kind(self.session, self.contract, self.output)
        result: np.ndarray | None = bound.run(row)
        return result
