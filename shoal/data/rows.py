"""Row dicts (a request's rows, ``df.to_dict("records")``) as an Arrow table, read as a data frame would be."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

__all__ = ["rows_table"]


def rows_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """``rows`` as a table: a float NaN is a missing value (as ``pa.Table.from_pandas`` reads it: a data frame's
    missing string is NaN, and an id column of ``"a"`` and NaN was refused, or one NaN hashed as the id "nan");
    a column whose cells Arrow cannot hold together is a ValueError naming it and the first differing row."""
    clean = [{k: None if type(v) is float and v != v else v for k, v in r.items()} for r in rows]
    try:
        return pa.Table.from_pylist(clean)
    except (pa.ArrowTypeError, pa.ArrowInvalid) as err:
        raise ValueError(_mixed(clean) or f"rows Arrow cannot read as one table: {err}") from None


def _mixed(rows: list[dict[str, Any]]) -> str | None:
    """Which column mixes kinds of values (text, numbers, bytes, ...), and in which rows."""
    kinds = (("text", str), ("bytes", bytes | bytearray | memoryview), ("a number", int | float))
    columns: dict[str, tuple[int, str]] = {}
    for i, r in enumerate(rows):
        for k, v in r.items():
            if v is None:
                continue
            kind = next((name for name, t in kinds if isinstance(v, t) and not isinstance(v, bool)),
                        type(v).__name__)
            first = columns.setdefault(k, (i, kind))
            if first[1] != kind:
                return (f"column {k!r}: row {first[0]} holds {first[1]}, row {i} {kind} ({v!r:.40}); "
                        "send one kind of value per column (null for a missing one)")
    return None
