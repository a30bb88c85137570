"""One row through inputs bound once: ONNX Runtime's IOBinding for the raw graph's batch-1 call.

A request's usual row (numbers and single ids, the export's fixed ``max_bytes``) gives the raw graph inputs of the
same shapes every time. :class:`BoundRow` binds each of those inputs once, as an ``OrtValue`` over a slice of
one numpy buffer per kind, and answers a row by writing its values into the buffers and running the binding:
ONNX Runtime no longer converts every input on every call (~0.3 us each: ~30 us of a ~100 us call on a graph
with 66 inputs). Lists of ids change shape with the row: they are bound on each call.

A :class:`BoundRow` owns its buffers, so it serves one thread at a time: :class:`BoundRows` keeps one per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from shoal.export.raw_feed import row_parts, row_plan

__all__ = ["BoundRow", "BoundRows", "bindable"]


def bindable(contract: Mapping[str, Any]) -> bool:
    """Whether one row of ``contract`` has inputs of fixed shapes: numbers and ids only, a fixed max_bytes."""
    return row_plan(contract) is not None and contract.get("max_bytes") is not None


class BoundRow:
    """``session``'s inputs for one row of ``contract``, bound once over buffers (see the module's docstring)."""

    def __init__(self, session: Any, contract: Mapping[str, Any], output: str) -> None:
        import onnxruntime as ort

        plan = row_plan(contract)
        if plan is None or not bindable(contract):
            raise ValueError("only a contract of numbers and ids with a fixed max_bytes can be bound")
        self.plan, self.width, self.output = plan, int(contract["max_bytes"]), output
        self.values = np.zeros(len(plan.dense), np.float32)
        self.bytes = np.zeros((len(plan.ids), 1, self.width), np.uint8)
        self.lengths = np.zeros(len(plan.ids), np.int64)
        self.binding = session.io_binding()
        self._run = session._sess.run_with_iobinding if hasattr(session, "_sess") else None
        self._session = session
        self._options = ort.RunOptions()
        for k, (_, name) in enumerate(plan.dense):
            self.binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(self.values[k:k + 1]))
        for k, (_, b, ln, _) in enumerate(plan.ids):
            self.binding.bind_ortvalue_input(b, ort.OrtValue.ortvalue_from_numpy(self.bytes[k]))
            self.binding.bind_ortvalue_input(ln, ort.OrtValue.ortvalue_from_numpy(self.lengths[k:k + 1]))
        self.binding.bind_output(output, "cpu")

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
        if self._run is not None:
            self._run(self.binding._iobinding, self._options)
        else:  # pragma: no cover - a binding without the private call
            self._session.run_with_iobinding(self.binding)
        out: np.ndarray = self.binding.copy_outputs_to_cpu()[0]
        return out


class BoundRows:
    """A :class:`BoundRow` per thread for ``session`` (made on a thread's first row), or none at all when the
    contract cannot be bound (texts, media, the Loop form's variable width): :meth:`run` then answers None."""

    def __init__(self, session: Any, contract: Mapping[str, Any], output: str) -> None:
        self.session, self.contract, self.output = session, contract, output
        self.possible = bindable(contract)
        self._local = threading.local()

    def run(self, row: Mapping[str, Any]) -> np.ndarray | None:
        if not self.possible:
            return None
        bound = getattr(self._local, "bound", None)
        if bound is None:
            bound = self._local.bound = BoundRow(self.session, self.contract, self.output)
        result: np.ndarray | None = bound.run(row)
        return result
