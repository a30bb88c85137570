"""Shared helpers of the auto tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from shoal.data.synthetic import SynthSpec, generate


def click_log(folder: Path, rows: int, train_rows: int, dense: int, max_cardinality: int) -> tuple[Path, Path]:
    """A synthetic click log (``dense`` counts, 4 sparse ids, base rate 0.2) split into a training file of its first
    ``train_rows`` rows and a test file of the rest."""
    generate(folder / "all.parquet", SynthSpec(rows=rows, dense=dense, sparse=4, base_rate=0.2,
                                               max_cardinality=max_cardinality))
    table = pq.read_table(folder / "all.parquet")
    pq.write_table(table.slice(0, train_rows), folder / "train.parquet")
    pq.write_table(table.slice(train_rows), folder / "test.parquet")
    return folder / "train.parquet", folder / "test.parquet"
