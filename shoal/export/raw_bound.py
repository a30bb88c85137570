"""One row through inputs bound once: ONNX Runtime's IOBinding for the raw graph's batch-1 call.

A request's usual row (numbers and single ids, the export's fixed ``max_bytes``) gives the raw graph inputs of the
same shapes every time. :class:`BoundRow` binds each of those inputs once, as an ``OrtValue`` over a slice of
one numpy buffer per kind, and answers a row by writing its values into the buffers and running the binding:
ONNX Runtime no longer converts every input on every call (~0.3 us each: ~30 us of a ~100 us call on a graph
with 66 inputs). Lists of ids change shape with the row: they are bound on each call.

A row of sounds alone (a speech model's request) is bound the same way by :class:`BoundSound`: each audio
feature's ``(1, samples)`` wave is one buffer, into which a usual WAV (mono 16-bit PCM at the feature's rate) is
converted straight from the file's bytes: no decoded copy, no feed dict, no conversion by ONNX Runtime.

A bound row owns its buffers, so it serves one thread at a time: :class:`BoundRows` keeps one per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shoal.data.features.audio import usual_pcm16_mono
from shoal.data.features.media import MediaError, cell_bytes
from shoal.export.raw_feed import row_parts, row_plan

__all__ = ["BoundRow", "BoundRows", "BoundSound", "bindable", "sounds_only"]

_HERE = Path(".")  # never read from: a bound sound takes bytes or base64, never a path
_PCM16 = np.float32(1 / 32768)  # a power of two: exactly the decoder's x / 32768


def bindable(contract: Mapping[str, Any]) -> bool:
    """Whether one row of ``contract`` has inputs of fixed shapes: numbers and ids only, a fixed max_bytes."""
    return row_plan(contract) is not None and contract.get("max_bytes") is not None


def sounds_only(contract: Mapping[str, Any]) -> bool:
    """Whether ``contract``'s features are all audio (:class:`BoundSound` binds a row of them)."""
    return bool(contract["features"]) and all(f["kind"] == "audio" for f in contract["features"])


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


class BoundSound(_Binding):
    """``session``'s inputs for one row of sounds (a contract of audio features alone: :func:`sounds_only`), bound
    once over one ``(1, samples)`` buffer per feature (see the module's docstring)."""

    def __init__(self, session: Any, contract: Mapping[str, Any], output: str) -> None:
        if not sounds_only(contract):
            raise ValueError("only a contract of audio features alone binds as sounds")
        super().__init__(session, output)
        self.features = [(f["column"], int(f["samples"]), int(f["sample_rate"])) for f in contract["features"]]
        self.waves = [np.zeros((1, samples), np.float32) for _, samples, _ in self.features]
        self.lengths = np.array([samples for _, samples, _ in self.features], np.int64)  # all of each sound
        for k, (f, wave) in enumerate(zip(contract["features"], self.waves, strict=True)):
            self._bind(f["inputs"]["wave"], wave)
            if "lengths" in f["inputs"]:  # a version 3 contract: each sound's samples
                self._bind(f["inputs"]["lengths"], self.lengths[k:k + 1])

    def run(self, row: Mapping[str, Any]) -> np.ndarray | None:
        """The graph's ``output`` for ``row``, or None when a sound needs the general feed (missing, not a usual
        WAV, another rate: :func:`~shoal.export.raw_media.media_feed` decodes it or names the row)."""
        for (column, samples, rate), wave in zip(self.features, self.waves, strict=True):
            try:
                data = cell_bytes(row.get(column), _HERE, paths=False)
            except MediaError:
                return None
            usual = usual_pcm16_mono(data)
            if usual is None or usual[2] != rate:
                return None
            pcm = np.frombuffer(usual[0], "<i2", count=min(len(usual[0]) // 2, samples))
            np.multiply(pcm, _PCM16, out=wave[0, : len(pcm)])  # as the decoder: float32(x) / 32768, exactly
            wave[0, len(pcm):] = 0  # silence after a shorter sound
        return self._answer()


class BoundRows:
    """A :class:`BoundRow` (or :class:`BoundSound`) per thread for ``session`` (made on a thread's first row), or
    none at all when the contract cannot be bound (texts, images, the Loop form's variable width): :meth:`run` then
    answers None."""

    def __init__(self, session: Any, contract: Mapping[str, Any], output: str) -> None:
        self.session, self.contract, self.output = session, contract, output
        self.kind = BoundRow if bindable(contract) else BoundSound if sounds_only(contract) else None
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
