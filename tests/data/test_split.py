"""The held-out split (``shoal.data.split``): which lines are held out, and the split file written and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shoal.data.readers import Chunk
from shoal.data.split import HeldOutSplit, valid_mask


def _chunk(lines: list[int], source: str = "train.csv") -> Chunk:
    return Chunk(pa.table({"x": [f"v{i}" for i in lines], "label": [str(i % 2) for i in lines]}),
                 np.array(lines, dtype=np.int64), source)


def test_written_rows_come_back_with_their_training_lines(tmp_path: Path) -> None:
    with HeldOutSplit(tmp_path) as split:
        split.write(_chunk([3, 8]))
        split.write(_chunk([12, 40, 41]))
    assert split.exists() and split.path == tmp_path / "valid-split.parquet"
    assert pq.read_table(split.path).column_names == ["x", "label", "__shoal_line__"]  # the file's contract

    streamed = list(split.chunks(chunk_rows=2, source="train.csv"))
    assert [c.lines.tolist() for c in streamed] == [[3, 8], [12, 40], [41]]
    assert all(c.file == "train.csv" and c.table.column_names == ["x", "label"] for c in streamed)
    assert streamed[1].table.column("x").to_pylist() == ["v12", "v40"]

    head = HeldOutSplit(tmp_path).read(4)
    assert head.lines.tolist() == [3, 8, 12, 40] and head.file == str(split.path)
    assert HeldOutSplit(tmp_path).read().lines.tolist() == [3, 8, 12, 40, 41]


def test_a_new_first_pass_replaces_the_old_file(tmp_path: Path) -> None:
    with HeldOutSplit(tmp_path) as split:
        split.write(_chunk([1, 2]))
    with HeldOutSplit(tmp_path) as split:
        assert not split.exists()  # removed on entering: a run without held-out rows leaves no stale file
    with HeldOutSplit(tmp_path) as split:
        split.write(_chunk([5]))
    assert HeldOutSplit(tmp_path).read().lines.tolist() == [5]


def test_jsonl_columns_are_stored_as_text(tmp_path: Path) -> None:
    """JSONL blocks may type a column differently (int in one, float in the next): the file keeps text."""
    with HeldOutSplit(tmp_path, "jsonl") as split:
        split.write(Chunk(pa.table({"n": [1, 2]}), np.array([1, 2]), "a.jsonl"))
        split.write(Chunk(pa.table({"n": [2.5]}), np.array([3]), "a.jsonl"))
    back = split.read()
    assert back.table.column("n").to_pylist() == ["1", "2", "2.5"] and back.lines.tolist() == [1, 2, 3]


def test_valid_mask_holds_out_the_fraction_by_line_number() -> None:
    lines = np.arange(1, 100_001)
    held = valid_mask(lines, 0.1, seed=3)
    assert abs(held.mean() - 0.1) < 0.005
    assert np.array_equal(valid_mask(lines[::-1], 0.1, seed=3), held[::-1])  # a line's fate is its own
    assert not valid_mask(lines, 0.0, seed=3).any()
