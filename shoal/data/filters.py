"""``data.filter``: the rows a source keeps, as ``[column, op, value]`` triples (their AND), applied while reading.

The config reads ``"date >= '2026-11-01' and date < '2026-12-01'"`` into triples (:mod:`shoal.config`): only
comparisons, nothing that runs. Here they become masks over a chunk's columns (the rows keep their line numbers,
so errors and the held-out split stay right) and, before anything is read, they skip what cannot match:

* a file whose hive partition values (``date=2026-10-31/``) fail a triple on a partition column is never opened;
* a Parquet row group whose statistics rule the triples out is never decoded (pyarrow.dataset's pruning).

Text columns (CSV/TSV cells, partition values) compare as text, or as numbers when the value is a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from shoal.config import RowFilter
from shoal.data.sources import BadInputError

__all__ = ["filter_columns", "keep_mask", "parquet_row_groups", "partition_may_match", "where"]

_COMPARE = {"=": "equal", "==": "equal", "!=": "not_equal", "<": "less", "<=": "less_equal", ">": "greater",
            ">=": "greater_equal"}


def where(row_filter: Sequence[RowFilter]) -> str:
    """The filter as the config's text, for messages."""
    def lit(v: Any) -> str:
        return repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

    return " and ".join(f"{c} {op} " + (f"({', '.join(lit(x) for x in v)})" if isinstance(v, list) else lit(v))
                        for c, op, v in row_filter)


def filter_columns(row_filter: Sequence[RowFilter] | None) -> list[str]:
    """The columns a filter reads, in order of first use."""
    return list(dict.fromkeys(c for c, _, _ in row_filter or ()))


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _operands(column: pa.ChunkedArray | pa.Array, values: list[Any], name: str, file: str,
              row_filter: Sequence[RowFilter]) -> tuple[Any, pa.Array]:
    """The column and the values in one type: text compared with numbers is read as numbers; a typed column
    (Parquet) takes the values cast to its type."""
    typ = column.type
    try:
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            if values and all(_numeric(v) for v in values):
                return pc.cast(column, pa.float64()), pa.array([float(v) for v in values], pa.float64())
            return column, pa.array([str(v) for v in values], typ)
        return column, pa.array(values).cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise BadInputError(f"{file}: data.filter {where(row_filter)!r}: column {name!r} ({typ}) cannot be compared "
                            f"with {values!r}: {str(err).splitlines()[0]}; fix the value in data.filter") from None


def keep_mask(table: pa.Table, row_filter: Sequence[RowFilter], file: str) -> np.ndarray:
    """(N,) bool: the rows of ``table`` (holding every filter column) that pass every triple; a missing value
    passes none but ``!=`` and ``not in``."""
    mask = np.ones(table.num_rows, dtype=bool)
    for name, op, value in row_filter:
        values = value if isinstance(value, list) else [value]
        column, lits = _operands(table.column(name), values, name, file, row_filter)
        if op in ("in", "not in"):
            hit = pc.is_in(column, value_set=lits)
            ok = pc.invert(hit) if op == "not in" else hit
        else:
            ok = pc.call_function(_COMPARE[op], [column, lits[0]])
        mask &= np.asarray(pc.fill_null(ok, op in ("!=", "not in")).to_numpy(zero_copy_only=False), dtype=bool)
    return mask


def partition_may_match(parts: dict[str, str], row_filter: Sequence[RowFilter], file: str) -> bool:
    """False when the file's partition values alone fail a triple: none of its rows can pass."""
    own = [t for t in row_filter if t[0] in parts]
    if not own:
        return True
    table = pa.table({k: pa.array([parts[k]], pa.string()) for k in dict.fromkeys(t[0] for t in own)})
    return bool(keep_mask(table, own, file)[0])


def _expression(row_filter: Sequence[RowFilter], schema: pa.Schema) -> ds.Expression | None:
    """The triples on typed (non-text) columns of ``schema`` as a pyarrow.dataset expression, for row-group
    pruning; None when none applies."""
    expr: ds.Expression | None = None
    for name, op, value in row_filter:
        if name not in schema.names:
            continue
        typ = schema.field(name).type
        text = pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_binary(typ)
        if text and any(_numeric(v) for v in (value if isinstance(value, list) else [value])):
            continue  # compared as numbers after a cast: no statistics for that
        try:
            lits = pa.array(value if isinstance(value, list) else [value]).cast(typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue  # keep_mask names the problem
        field = ds.field(name)
        if op in ("in", "not in"):
            term = field.isin(lits) if op == "in" else ~field.isin(lits)
        else:
            term = {"equal": field == lits[0], "not_equal": field != lits[0], "less": field < lits[0],
                    "less_equal": field <= lits[0], "greater": field > lits[0],
                    "greater_equal": field >= lits[0]}[_COMPARE[op]]
        expr = term if expr is None else expr & term
    return expr


def parquet_row_groups(path: Path, schema: pa.Schema, row_filter: Sequence[RowFilter]) -> list[int] | None:
    """The row groups of a Parquet file that may hold rows passing the filter (from their statistics, through
    pyarrow.dataset), or None when the filter rules none out."""
    expr = _expression(row_filter, schema)
    if expr is None:
        return None
    import pyarrow.fs as pafs

    fragment = ds.ParquetFileFormat().make_fragment(str(Path(path).resolve()), pafs.LocalFileSystem())
    return sorted(rg.id for piece in fragment.split_by_row_group(expr, schema=schema) for rg in piece.row_groups)
