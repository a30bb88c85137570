"""Sources benchmark: rows/s of reading + encoding one synthetic log kept four ways, and peak memory of each.

    python benchmarks/sources.py --json bench-sources.json [--rows N]

Data: ``shoal synth`` rows (5,000,000 by default; ``--rows`` for fewer; 13 dense and 26 sparse features, label)
written, in a temporary folder, as

* ``parquet-file``: one Parquet file (row groups of 250,000 rows, as ``shoal synth`` writes);
* ``hive-16-parts``: a folder of 16 Parquet parts under ``part=K/`` folders (the partition column unread);
* ``csv-gzip``: one gzip-compressed CSV with a header;
* ``duckdb-query``: ``select * from read_parquet('synthetic.parquet')`` in a ``.sql`` file, run by DuckDB.

Each is read by ``shoal.data.stream.chunks`` (chunks of 65,536 rows, as ``data.chunk_rows`` defaults to) and every
chunk encoded by an Encoder fitted on the first chunk (dense log1p + standardisation, sparse ids hashed into
100,000 buckets), in a fresh subprocess each time: one warm-up read first (numba's compiled kernels cached, page
cache warm), then each source ``REPEATS`` times, the fastest kept. Metrics: ``rows_per_s`` (rows read and encoded
per second, wall clock of the whole pass, fitting on the first chunk included), ``seconds``, ``peak_rss_mib`` (the
largest peak resident memory of the subprocesses).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

try:  # run as ``python benchmarks/sources.py`` or imported as ``benchmarks.sources``
    from benchmarks.common import markdown_table, row, write_json
except ImportError:  # pragma: no cover - depends on how the file is run
    from common import markdown_table, row, write_json  # type: ignore[no-redef]

BENCH = "sources"
ROWS, PARTS, CHUNK_ROWS, REPEATS = 5_000_000, 16, 65_536, 3
SYSTEMS = ("parquet-file", "hive-16-parts", "csv-gzip", "duckdb-query")


def write_sources(rows: int, folder: Path) -> dict[str, Path]:
    """The synthetic log written each way; every writer streams row groups, so memory stays bounded."""
    from shoal.data.synthetic import SynthSpec, generate

    parquet = folder / "synthetic.parquet"
    generate(parquet, SynthSpec(rows=rows, dense=13, sparse=26, seed=1))
    pf = pq.ParquetFile(parquet)
    hive, csv = folder / "hive", folder / "synthetic.csv.gz"
    per_part = -(-rows // PARTS)
    writer: pq.ParquetWriter | None = None
    done = 0
    with pa.CompressedOutputStream(str(csv), "gzip") as out:
        csv_writer = pacsv.CSVWriter(out, pf.schema_arrow)
        for batch in pf.iter_batches(batch_size=per_part // 4 or 1):
            csv_writer.write_batch(batch)
            while batch.num_rows:
                part = done // per_part
                take = min(batch.num_rows, (part + 1) * per_part - done)
                if writer is None or done % per_part == 0:
                    if writer is not None:
                        writer.close()
                    (hive / f"part={part}").mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(hive / f"part={part}" / "part-0.parquet", pf.schema_arrow)
                writer.write_batch(batch.slice(0, take))
                batch, done = batch.slice(take), done + take
        csv_writer.close()
    if writer is not None:
        writer.close()
    sql = folder / "recent.sql"
    sql.write_text("select * from read_parquet('synthetic.parquet')\n")
    return {"parquet-file": parquet, "hive-16-parts": hive, "csv-gzip": csv, "duckdb-query": sql}


def measure(path: Path) -> dict[str, float]:
    """Read and encode every row of ``path`` (in this process): rows, seconds, peak RSS in MiB."""
    from shoal.config import parse_config
    from shoal.data.encoder import Encoder
    from shoal.data.readers import BadRowSink
    from shoal.data.stream import chunks

    cfg = parse_config({"data": {"train": str(path), "chunk_rows": CHUNK_ROWS}, "label": {"column": "label"},
                        "features": [{"name": f"d{i}", "kind": "dense", "transform": "log1p"} for i in range(13)]
                        + [{"name": f"s{i}", "kind": "sparse", "buckets": 100_000} for i in range(26)],
                        "model": {"name": "logistic"}})
    encoder = Encoder(cfg.features, cfg.label)
    sink = BadRowSink("count")
    start = time.perf_counter()
    stream = chunks(cfg.data.train, cfg.data, encoder.columns(), sink)
    first = next(stream)
    encoder.fit([first], sink)
    rows = len(encoder.encode(first, sink))
    for chunk in stream:
        rows += len(encoder.encode(chunk, sink))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "seconds": seconds, "peak_rss_mib": peak}


def _measured(path: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True, capture_output=True,
                          text=True)
    got: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return got


def run(rows: int, folder: Path) -> list[dict[str, Any]]:
    paths = write_sources(rows, folder)
    out: list[dict[str, Any]] = []
    _measured(paths[SYSTEMS[0]])  # warm-up
    for system in SYSTEMS:
        tries = [_measured(paths[system]) for _ in range(REPEATS)]
        got = {**min(tries, key=lambda t: t["seconds"]), "peak_rss_mib": max(t["peak_rss_mib"] for t in tries)}
        if got["rows"] != rows:
            raise RuntimeError(f"{system}: read {got['rows']} rows, wrote {rows}")
        dataset = f"synthetic-{rows}"
        out += [row(BENCH, dataset, system, "rows_per_s", got["rows"] / got["seconds"]),
                row(BENCH, dataset, system, "seconds", got["seconds"]),
                row(BENCH, dataset, system, "peak_rss_mib", got["peak_rss_mib"])]
        print(f"{system}: {got['rows'] / got['seconds']:,.0f} rows/s, {got['seconds']:.1f} s, "
              f"peak RSS {got['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the result rows here")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows of the synthetic log (default {ROWS:,})")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the subprocess: one source
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure)))
        return
    with tempfile.TemporaryDirectory(prefix="shoal-bench-sources-") as tmp:
        rows = run(args.rows, Path(tmp))
    if args.json is not None:
        write_json(rows, args.json)
    print(markdown_table(rows, index=["system"], columns="metric"))


if __name__ == "__main__":
    main()
