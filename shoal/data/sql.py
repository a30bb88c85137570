"""A DuckDB query as a source: a ``.sql`` file, or ``data.train: {sql: QUERY}`` (which the config keeps as one).

The query runs in an embedded, in-memory DuckDB; its result streams as Arrow record batches (``to_arrow_reader``),
so memory follows ``data.chunk_rows``, not the result's size. Relative paths in the query (``read_parquet('logs/
*.parquet')``) resolve against the folder of the config that holds the query, or of the ``.sql`` file (its first
line may name another: ``-- shoal-base: /data``). Row numbers count the result's rows from 1.

Every pass over the data (fitting, each epoch unless cached, each process) runs the query again, so its rows must
come in the same order each time: DuckDB keeps the order of what it scans (``preserve_insertion_order``), but an
aggregate, DISTINCT or join needs an ``ORDER BY`` (the held-out validation rows are chosen by row number).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shoal.config import SQL_BASE_HEADER
from shoal.data.sources import BadInputError

__all__ = ["read_query", "sql_chunks", "sql_header"]


def read_query(path: Path) -> tuple[str, Path]:
    """The query of a ``.sql`` file and the folder its relative paths resolve against."""
    text = Path(path).read_text(encoding="utf-8")
    head, _, rest = text.partition("\n")
    if head.startswith(SQL_BASE_HEADER):
        return rest.strip(), Path(head[len(SQL_BASE_HEADER):].strip())
    return text.strip(), Path(path).resolve().parent


def _shown(query: str) -> str:
    one = " ".join(query.split())
    return one if len(one) <= 300 else one[:297] + "..."


def _run(path: Path) -> tuple[Any, Any]:
    """The DuckDB connection and the query's relation (planned, not yet run)."""
    import duckdb

    query, base = read_query(path)
    if not query:
        raise BadInputError(f"{path}: the SQL source holds no query; write one, e.g. "
                            "select * from read_parquet('logs/*.parquet')")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET file_search_path = ?", [str(base)])
        con.execute("SET preserve_insertion_order = true")
        sql = query.rstrip().rstrip(";")
        rel = con.sql(sql)
        if rel is None:
            raise BadInputError(f"SQL source {_shown(query)!r}: the query returns no rows (is it a SELECT?); a source "
                                "must be a query that returns rows")
    except duckdb.Error as err:
        con.close()
        raise BadInputError(f"SQL source {_shown(query)!r} (relative paths from {base}): {type(err).__name__}: "
                            f"{' '.join(str(err).split())}; fix the query in data.train/valid/test (or {path})") \
            from None
    return con, rel


def sql_header(path: Path) -> list[str]:
    """The column names of the query's result (DuckDB plans it; no row is read)."""
    con, rel = _run(path)
    try:
        return list(rel.columns)
    finally:
        con.close()


def sql_chunks(path: Path, columns: Sequence[str], chunk_rows: int, missing_columns: Any) -> Iterator[Any]:
    """(table, lines) of ``columns`` of the query's result, ``chunk_rows`` rows at a time, streamed.
    ``missing_columns(path, have, want)`` raises when the result lacks a wanted column."""
    import duckdb

    con, rel = _run(path)
    try:
        missing_columns(path, rel.columns, columns)
        reader = rel.select(*[duckdb.ColumnExpression(c) for c in columns]).to_arrow_reader(chunk_rows)
        row = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (duckdb.Error, pa.ArrowException) as err:
                raise BadInputError(f"SQL source {path}: the query failed after row {row}: "
                                    f"{' '.join(str(err).split())}") from None
            n = batch.num_rows
            yield pa.Table.from_batches([batch]), np.arange(row + 1, row + n + 1, dtype=np.int64)
            row += n
    finally:
        con.close()
