"""The input-sharding benchmark (benchmarks/shard_read.py) on a small generated file: rows and schema."""

from __future__ import annotations

from pathlib import Path

from benchmarks import shard_read

KEYS = {"bench", "dataset", "system", "metric", "value"}


def test_shard_read_rows(tmp_path: Path) -> None:
    out = shard_read.run(3_000, tmp_path, chunk_rows=256)
    assert out and all(set(r) == KEYS and r["bench"] == "shard_read" for r in out)
    got = {(r["system"], r["metric"]): r["value"] for r in out}
    assert got[("csv-whole-file", "rows")] == 3_000
    for world in shard_read.WORLDS:
        for kind in ("csv-byte-ranges", "parquet-row-groups"):
            rows = got[(f"{kind}-rank1-of-{world}", "rows")]
            assert 0 < rows < 3_000 / world * 1.5  # rank 1's share, not the file
            assert got[(f"{kind}-rank1-of-{world}", "read_s")] > 0
