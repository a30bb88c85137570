"""Input-sharding benchmark: what one rank of W reads of a CSV training file, against the whole-file parse.

    python benchmarks/shard_read.py --json bench-shard-read.json [--quick] [--rows N]

Data: ``shoal synth`` rows (500,000; 50,000 with ``--quick``; 13 dense and 26 sparse features) written as a CSV
with a header (and as Parquet, row groups of ``chunk_rows``, for reference), in a temporary folder. Chunks of
65,536 rows, as ``data.chunk_rows`` defaults to (4,096 with ``--quick``, so that every rank has chunks).

Systems, each timed as the median of 3 reads of every column, warm page cache (what a rank reads, not the disk):

* ``csv-whole-file``: the whole-file parse (``read_chunks``): what every rank did before byte ranges, and what
  rank 0's first pass still does;
* ``csv-line-scan``: rank 0's scan for line ends that turns the chunks' first lines into byte ranges
  (``byte_ranges``), once per run;
* ``csv-byte-ranges-rank1-of-W`` (W = 2, 4): rank 1 parses its chunks' byte ranges alone (``read_range``);
* ``parquet-row-groups-rank1-of-W``: rank 1 decodes its chunks' row groups (``read_parquet_chunks``).

Metrics: ``read_s`` (seconds), ``rows`` (rows read), ``speedup`` (the whole-file parse's seconds / the rank's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

try:  # run as ``python benchmarks/shard_read.py`` or imported as ``benchmarks.shard_read``
    from benchmarks.common import markdown_table, row, write_json
except ImportError:  # pragma: no cover - depends on how the file is run
    from common import markdown_table, row, write_json  # type: ignore[no-redef]

from shoal.data.readers import BadRowSink, byte_ranges, read_chunks, read_parquet_chunks, read_range
from shoal.data.synthetic import SynthSpec, generate

BENCH = "shard_read"
ROWS, QUICK_ROWS, CHUNK_ROWS, QUICK_CHUNK_ROWS, REPEATS, WORLDS = 500_000, 50_000, 65_536, 4_096, 3, (2, 4)


def _timed(read: Callable[[], int]) -> tuple[float, int]:
    """(median seconds, rows) of ``REPEATS`` calls of ``read``."""
    times, rows = [], 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        rows = read()
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def run(rows: int, folder: Path, chunk_rows: int = CHUNK_ROWS) -> list[dict[str, Any]]:
    parquet, csv = folder / "synthetic.parquet", folder / "synthetic.csv"
    generate(parquet, SynthSpec(rows=rows, dense=13, sparse=26, seed=1))
    table = pq.read_table(parquet)
    pq.write_table(table, parquet, row_group_size=chunk_rows)
    pacsv.write_csv(table, csv)
    columns = table.column_names
    dataset = f"synthetic-{rows}-{csv.stat().st_size / 1e6:.0f}MB"
    spans: list[tuple[int, int, int]] = []

    def whole() -> int:
        spans.clear()
        for c in read_chunks(csv, fmt=None, columns=columns, sink=BadRowSink("count"), chunk_rows=chunk_rows):
            spans.append((int(c.lines[0]), int(c.lines[-1]), len(c)))
        return sum(n for _, _, n in spans)

    out: list[dict[str, Any]] = []

    def add(system: str, seconds: float, n: int, base: float) -> None:
        out.extend([row(BENCH, dataset, system, "read_s", seconds), row(BENCH, dataset, system, "rows", n),
                    row(BENCH, dataset, system, "speedup", base / seconds)])

    base, n = _timed(whole)
    add("csv-whole-file", base, n, base)
    found: list[Any] = [None]

    def scan() -> int:
        found[0] = byte_ranges(csv, spans)
        return 0

    seconds, _ = _timed(scan)
    ranges = found[0]
    if ranges is None:
        raise RuntimeError(f"{csv}: no byte ranges (its lines should be its records)")
    add("csv-line-scan", seconds, 0, base)
    for world in WORLDS:
        seconds, n = _timed(lambda w=world: sum(len(read_range(csv, s, fmt=None, columns=columns,  # type: ignore[misc]
                                                               chunk_rows=chunk_rows)) for s in ranges[1::w]))
        add(f"csv-byte-ranges-rank1-of-{world}", seconds, n, base)
        seconds, n = _timed(lambda w=world: sum(len(c) for _, c in read_parquet_chunks(  # type: ignore[misc]
            parquet, columns=columns, chunk_rows=chunk_rows, select=lambda ci: ci % w == 1)))
        add(f"parquet-row-groups-rank1-of-{world}", seconds, n, base)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the result rows here")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows instead of {ROWS:,}")
    parser.add_argument("--rows", type=int, help="rows of the synthetic file (overrides --quick)")
    args = parser.parse_args(argv)
    rows = args.rows or (QUICK_ROWS if args.quick else ROWS)
    with tempfile.TemporaryDirectory(prefix="shoal-shard-read-") as tmp:
        out = run(rows, Path(tmp), QUICK_CHUNK_ROWS if args.quick else CHUNK_ROWS)
    print(markdown_table(out, ("dataset", "system"), "metric"))
    if args.json:
        write_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
